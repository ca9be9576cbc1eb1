"""Presets resolved into specs for a model's depth; specs recorded and read back as JSON."""

from __future__ import annotations

import pytest

from napari_sam_peft.core.peft import PRESETS, PeftSpec, UnknownMethodError, spec_from_preset


@pytest.mark.parametrize(
    ("preset", "depth", "method", "blocks", "description"),
    [
        ("late_lora", 12, "lora", tuple(range(6, 12)), "late_lora (lora, blocks 6-11)"),
        ("lora", 4, "lora", (0, 1, 2, 3), "lora (lora, blocks all)"),
        ("late_ft", 4, "full_ft", (2, 3), "late_ft (full_ft, blocks 2-3)"),
        ("freeze_encoder", 4, "freeze_encoder", (), "freeze_encoder (freeze_encoder, blocks decoder)"),
    ],
)
def test_a_preset_resolves_to_its_method_and_blocks_for_the_depth(preset, depth, method, blocks, description):
    spec = spec_from_preset(preset, depth)
    assert (spec.method, spec.blocks, spec.preset) == (method, blocks, preset)
    assert spec.describe(depth) == description


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_survives_its_json_record(preset):
    spec = spec_from_preset(preset, 4)
    assert PeftSpec.from_json(spec.to_json()) == spec


def test_an_unknown_preset_lists_the_choices_and_overrides_are_kept():
    with pytest.raises(UnknownMethodError, match="Unknown preset 'loraa'. Choose one of: full_ft, "):
        spec_from_preset("loraa", 4)
    assert spec_from_preset("lora", 4, rank=4).options.rank == 4
