"""An adapter merged into its base model: the plain SAM state dict micro_sam loads, with the instance
decoder beside it when the adapter has one; AdaptFormer and another base model are refused."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.export.merged import merged_checkpoint
from napari_sam_peft.core.peft import (
    Adapter,
    AdapterMismatchError,
    MergeNotSupportedError,
    attach,
    spec_from_preset,
)
from napari_sam_peft.core.sam.architecture import TINY, build_sam
from napari_sam_peft.core.sam.loading import LoadedModel, model_identity, state_dict_hash
from tests.conftest import sam_forward

pytestmark = pytest.mark.export


def _adapter(model, preset="late_lora", decoder=None):
    """An adapter of ``model`` on its last block whose tensors differ from the base (no training needed)."""
    handle = attach(model.sam, spec_from_preset(preset, model.architecture.depth, blocks="last 1"))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(0.05)
    adapter = Adapter.from_attached(handle, model, decoder=decoder)
    handle.detach()
    return adapter


def test_the_merged_weights_answer_as_the_base_with_the_adapter_attached(tiny_model):
    adapter = _adapter(tiny_model)
    base_hash = state_dict_hash(tiny_model.sam.state_dict())
    merged = merged_checkpoint(adapter, tiny_model)

    assert merged.keys() == tiny_model.sam.state_dict().keys()  # plain SAM names: no LoRA wrappers
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in merged.values())
    assert state_dict_hash(tiny_model.sam.state_dict()) == base_hash  # the loaded model is left as it was
    changed = {k for k, t in tiny_model.sam.state_dict().items() if not torch.equal(merged[k], t)}
    encoder = {k for k in changed if k.startswith("image_encoder.")}
    assert encoder and all(k.startswith("image_encoder.blocks.3.") for k in encoder)  # the adapted block only

    handle = adapter.attach_to(tiny_model)
    expected = sam_forward(tiny_model.sam, TINY.img_size)
    handle.detach()
    plain = build_sam(TINY)
    plain.load_state_dict(merged)  # strict: loads into segment_anything's own SAM
    got = sam_forward(plain, TINY.img_size)
    torch.testing.assert_close(got["masks"], expected["masks"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got["iou"], expected["iou"], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got["masks"], sam_forward(tiny_model.sam, TINY.img_size)["masks"])  # not the base


def test_an_adapter_with_an_instance_decoder_gives_model_and_decoder_state_as_micro_sam(tiny_model, tmp_path):
    decoder = {"head.weight": torch.arange(6.0).reshape(2, 3), "head.bias": torch.ones(2)}
    path = _adapter(tiny_model, decoder=decoder).save(tmp_path / "ais.safetensors")
    checkpoint = merged_checkpoint(Adapter.load(path), tiny_model)

    assert set(checkpoint) == {"model_state", "decoder_state"}
    assert checkpoint["model_state"].keys() == tiny_model.sam.state_dict().keys()
    assert checkpoint["decoder_state"].keys() == decoder.keys()
    for name, tensor in decoder.items():
        torch.testing.assert_close(checkpoint["decoder_state"][name], tensor)
    plain = merged_checkpoint(_adapter(tiny_model), tiny_model)
    assert "model_state" not in plain and "image_encoder.patch_embed.proj.weight" in plain


def test_adaptformer_cannot_be_merged_and_says_which_methods_can(tiny_model):
    adapter = _adapter(tiny_model, preset="adaptformer")
    base_hash = state_dict_hash(tiny_model.sam.state_dict())
    with pytest.raises(MergeNotSupportedError, match="cannot be exported as a merged checkpoint") as raised:
        merged_checkpoint(adapter, tiny_model)
    assert isinstance(raised.value, SamPeftError)  # one line and exit status 2 on the command line
    assert "lora, late_lora, ssf, fact" in str(raised.value)
    assert state_dict_hash(tiny_model.sam.state_dict()) == base_hash  # nothing stays attached
    assert set(tiny_model.sam.state_dict()) == set(build_sam(TINY).state_dict())


def test_an_adapter_of_another_base_model_is_not_merged(tiny_model):
    adapter = _adapter(tiny_model)
    torch.manual_seed(1)
    other_sam = build_sam(TINY)
    other = LoadedModel(other_sam, model_identity(other_sam, "other"), TINY, "test")
    with pytest.raises(AdapterMismatchError, match="trained on base model 'tiny'"):
        merged_checkpoint(adapter, other)
