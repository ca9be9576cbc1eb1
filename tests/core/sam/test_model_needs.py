"""The line under the Segment dock's model list: what the chosen model needs, measured."""

from __future__ import annotations

import importlib.util

from napari_sam_peft.core.sam.model_needs import model_needs_line


def test_a_finetuned_registry_model_needs_what_its_base_needs():
    assert model_needs_line("vit_b_lm") == model_needs_line("vit_b")
    assert "1024 px input" in model_needs_line("hvit_t_cells") and "2.7 s" in model_needs_line("hvit_t_cells")
    assert model_needs_line("not_a_model") == ""


def test_a_sam2_model_says_when_metas_package_is_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sam2" else real(name, *a))
    assert "needs Meta's sam2 package, not installed" in model_needs_line("hvit_t")
    assert "sam2" not in model_needs_line("vit_t")
