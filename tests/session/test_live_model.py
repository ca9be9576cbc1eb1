"""The session's model half without Qt: what its signals carry when model and adapter change."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset
from napari_sam_peft.session import AdapterChange, AnnotatorSession, NoModelError


def _adapter(model, path):
    handle = attach(model.sam, spec_from_preset("lora", model.architecture.depth, rank=2))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(0.1)
    adapter = Adapter.from_attached(handle, model)
    handle.detach()
    return adapter.save(path)


def test_model_and_adapter_changes_carry_typed_payloads(tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    models, adapters = [], []
    session.model.base_changed.connect(models.append)
    session.model.adapter_changed.connect(adapters.append)
    with pytest.raises(NoModelError, match="Load model"):
        session.model.set_adapter(None)

    session.model.set_base(tiny_model)
    assert models == [tiny_model] and session.model.adapter is None
    path = _adapter(tiny_model, tmp_path / "a.safetensors")
    attached = session.model.set_adapter(path)
    session.model.set_adapter(None)

    assert adapters == [AdapterChange(attached, path), AdapterChange(None, None)]
    assert attached is not None and session.model.adapter_path is None


def test_a_bad_adapter_changes_nothing_and_says_so(tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(tiny_model)
    good = _adapter(tiny_model, tmp_path / "good.safetensors")
    session.model.set_adapter(good)
    adapters = []
    session.model.adapter_changed.connect(adapters.append)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not an adapter")
    with pytest.raises(SamPeftError, match="not a readable adapter"):
        session.model.set_adapter(bad)
    assert adapters == [] and session.model.adapter_path == good
    session.model.set_adapter(None)
