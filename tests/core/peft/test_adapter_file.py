"""Adapter files: what they record, and the clear errors for bad ones (model left unchanged)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from napari_sam_peft import __version__
from napari_sam_peft.core.peft import (
    Adapter,
    AdapterAttachError,
    AdapterMismatchError,
    InvalidAdapterError,
    MethodOptions,
    UnknownMethodError,
    attach,
    attached_to,
    spec_from_preset,
)
from napari_sam_peft.core.sam.architecture import TINY, build_sam
from napari_sam_peft.core.sam.loading import LoadedModel, model_identity


@pytest.fixture
def adapter_path(tiny_model, tmp_path):
    handle = attach(tiny_model.sam, spec_from_preset("lora", TINY.depth, rank=4))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(0.01)
    adapter = Adapter.from_attached(
        handle, tiny_model, parent_adapter="abc", training_snapshot="snap-1", metrics={"loss": 0.25}
    )
    handle.detach()
    return adapter.save(tmp_path / "cells.safetensors")


def _state(model):
    return {k: v.clone() for k, v in model.sam.state_dict().items()}


def _assert_unchanged(model, before):
    assert attached_to(model.sam) is None
    state = model.sam.state_dict()
    assert state.keys() == before.keys()
    assert all(torch.equal(state[k], v) for k, v in before.items())


def _rewrite(path, out, **metadata_changes):
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    metadata.update(metadata_changes)
    save_file(tensors, str(out), metadata=metadata)


def test_file_holds_only_the_trained_tensors_and_the_metadata(adapter_path, tiny_model):
    adapter = Adapter.load(adapter_path)
    assert all(("lora_" in k) or k.startswith(("prompt_encoder.", "mask_decoder.")) for k in adapter.tensors)
    assert not any(k.startswith("image_encoder") and "lora_" not in k for k in adapter.tensors)
    assert adapter.spec.method == "lora" and adapter.spec.blocks == tuple(range(TINY.depth))
    assert adapter.spec.options.rank == 4
    assert adapter.base_model == tiny_model.identity
    assert adapter.parent_adapter == "abc" and adapter.training_snapshot == "snap-1"
    assert adapter.metrics == {"loss": 0.25}
    assert adapter.package_version == __version__
    assert adapter.created.endswith("+00:00")
    assert len(adapter.identity) == 64
    assert adapter_path.stat().st_size < 2 * 4 * adapter.num_parameters + 20_000


def test_wrong_base_model_is_refused_and_the_model_is_unchanged(adapter_path):
    torch.manual_seed(42)
    other = build_sam(TINY)
    model = LoadedModel(other, model_identity(other, "other"), TINY, "test")
    before = _state(model)
    with pytest.raises(AdapterMismatchError, match="trained on base model 'tiny'.*Load 'tiny' first"):
        Adapter.load(adapter_path).attach_to(model)
    _assert_unchanged(model, before)


def test_truncated_file_is_refused(adapter_path, tmp_path):
    data = adapter_path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidAdapterError, match="truncated or damaged"):
        Adapter.load(cut)


def test_tampered_tensor_bytes_are_detected(adapter_path, tmp_path):
    data = bytearray(adapter_path.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside the last tensor's data
    bad = tmp_path / "tampered.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(InvalidAdapterError, match="modified or damaged"):
        Adapter.load(bad)


def test_tampered_metadata_is_detected(adapter_path, tmp_path):
    bad = tmp_path / "edited.safetensors"
    _rewrite(adapter_path, bad, metrics=json.dumps({"loss": 0.0}))
    with pytest.raises(InvalidAdapterError, match="modified or damaged"):
        Adapter.load(bad)


def test_unknown_method_says_to_update(adapter_path, tiny_model, tmp_path):
    adapter = Adapter.load(adapter_path)
    adapter.spec = type(adapter.spec)(method="dora", blocks=(0,), options=MethodOptions(), preset=None)
    path = adapter.save(tmp_path / "future.safetensors")  # a well-formed file from a "newer version"
    with pytest.raises(UnknownMethodError, match="update napari-sam-peft"):
        Adapter.load(path)


def test_newer_format_version_says_to_update(adapter_path, tmp_path):
    newer = tmp_path / "newer.safetensors"
    _rewrite(adapter_path, newer, format_version="99")
    with pytest.raises(InvalidAdapterError, match="Update napari-sam-peft"):
        Adapter.load(newer)


def test_a_model_checkpoint_is_not_taken_for_an_adapter(tiny_model, tmp_path):
    from napari_sam_peft.core.sam.loading import save_model

    path = save_model(tiny_model, tmp_path / "model.safetensors")
    with pytest.raises(InvalidAdapterError, match="not a napari-sam-peft adapter"):
        Adapter.load(path)


def test_tensors_that_do_not_fit_leave_the_model_unchanged(adapter_path, tiny_model):
    adapter = Adapter.load(adapter_path)
    name = next(k for k in adapter.tensors if "lora_a" in k)
    adapter.tensors[name] = torch.zeros(3, 3)
    before = _state(tiny_model)
    with pytest.raises(AdapterAttachError, match="shape"):
        adapter.attach_to(tiny_model)
    _assert_unchanged(tiny_model, before)


def test_missing_file_and_wrong_suffix(tmp_path, adapter_path):
    with pytest.raises(InvalidAdapterError, match="No adapter file"):
        Adapter.load(tmp_path / "nope.safetensors")
    with pytest.raises(InvalidAdapterError, match="safetensors"):
        Adapter.load(adapter_path).save(tmp_path / "adapter.pth")


def test_save_is_atomic_no_temporary_files_left(adapter_path):
    assert [p.name for p in adapter_path.parent.iterdir()] == [adapter_path.name]


def test_merged_state_dict_leaves_the_live_model_unchanged(adapter_path, tiny_model):
    before = _state(tiny_model)
    merged = Adapter.load(adapter_path).merged_state_dict(tiny_model)
    assert set(merged) == set(before)
    _assert_unchanged(tiny_model, before)


def test_the_instance_decoder_travels_in_the_same_file_under_the_same_hash(tiny_model, tmp_path):
    from napari_sam_peft.core.instance import build_decoder, decoder_state
    from napari_sam_peft.core.peft import attach, spec_from_preset

    handle = attach(tiny_model.sam, spec_from_preset("freeze_encoder", TINY.depth))
    decoder = decoder_state(build_decoder(tiny_model.sam))
    adapter = Adapter.from_attached(handle, tiny_model, decoder=decoder)
    handle.detach()
    without = Adapter(
        adapter.spec, adapter.tensors, adapter.base_model, adapter.architecture, created=adapter.created
    )
    assert adapter.identity != without.identity  # the decoder is part of the adapter's identity
    path = adapter.save(tmp_path / "joint.safetensors")
    loaded = Adapter.load(path)
    assert loaded.identity == adapter.identity and set(loaded.tensors) == set(adapter.tensors)
    assert all(torch.equal(loaded.decoder[k], v) for k, v in decoder.items())
    # an edited decoder tensor is caught like any other
    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    name = next(k for k in tensors if k.startswith("instance_decoder."))
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(tmp_path / "edited.safetensors"), metadata=metadata)
    with pytest.raises(InvalidAdapterError, match="modified or damaged"):
        Adapter.load(tmp_path / "edited.safetensors")
