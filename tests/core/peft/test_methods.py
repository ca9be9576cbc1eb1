"""One contract for every preset, table-driven (rows: presets; the same assertions for each)."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.peft import (
    PRESETS,
    Adapter,
    MergeNotSupportedError,
    attach,
    attached_to,
    spec_from_preset,
)
from napari_sam_peft.core.peft.attach import base_name
from napari_sam_peft.core.sam.architecture import TINY, build_sam
from tests.conftest import sam_forward, sam_train_loss

# What each preset may train inside the image encoder (names as in plain SAM), and whether
# the prompt encoder and mask decoder train. "added" means only tensors the method adds.
INTENT = {
    "full_ft": (lambda n: True, True),
    "freeze_encoder": (lambda n: False, True),
    "ln_tune": (lambda n: ".norm1." in n or ".norm2." in n, True),
    "bias_tune": (lambda n: n.endswith(".bias"), True),
    "attn_tune": (lambda n: ".attn." in n, True),
    "ssf": ("added", True),
    "fact": ("added", True),
    "lora": ("added", True),
    "adaptformer": ("added", True),
    "late_lora": ("added", True),
    "late_ft": (lambda n: n.split(".")[2] in {"2", "3"}, True),
    "decoder_lora": ("added", False),
}
CPU_PRESETS = [p for p in PRESETS if p != "qlora"]
MERGEABLE = [p for p in CPU_PRESETS if p != "adaptformer"]


def _perturb(handle, seed=1):
    """Stand-in for training: move every trainable tensor away from its initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)


def _assert_same_outputs(a, b, atol=0.0):
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol)


def test_every_preset_has_an_intent_row():
    assert set(INTENT) | {"qlora"} == set(PRESETS)


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_output_is_unchanged_at_initialisation(tiny_sam, preset):
    before = sam_forward(tiny_sam, TINY.img_size)
    attach(tiny_sam, spec_from_preset(preset, TINY.depth))
    after = sam_forward(tiny_sam, TINY.img_size)
    for key in before:
        assert (after[key] - before[key]).abs().max() <= 1e-5, key


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_gradients_reach_only_the_intended_tensors(tiny_sam, preset):
    original = {n for n, _ in tiny_sam.named_parameters()}
    handle = attach(tiny_sam, spec_from_preset(preset, TINY.depth))
    _perturb(handle)  # so that e.g. LoRA's A receives a non-zero gradient through B
    tiny_sam.train()
    sam_train_loss(tiny_sam, TINY.img_size).backward()

    trainable = set(handle.trainable_names)
    assert trainable, "a method that trains nothing"
    encoder_rule, trains_decoder = INTENT[preset]
    for name, param in tiny_sam.named_parameters():
        plain = base_name(name)
        assert param.requires_grad == (name in trainable), name
        if name not in trainable:
            assert param.grad is None, f"{preset}: frozen {name} received a gradient"
            continue
        if name.startswith("image_encoder.") or name.startswith("mask_decoder.transformer."):
            assert param.grad is not None, f"{preset}: trainable {name} received no gradient"
        if plain not in original:  # a tensor the method added
            assert encoder_rule == "added", f"{preset} added {name}"
        elif plain.startswith(("prompt_encoder.", "mask_decoder.")):
            assert trains_decoder, f"{preset} trains the decoder tensor {name}"
        else:
            assert encoder_rule != "added" and encoder_rule(plain), f"{preset} trains {name}"
    if trains_decoder:
        decoder = {
            n for n, _ in tiny_sam.named_parameters() if n.startswith("mask_decoder.") and ".base." not in n
        }
        assert decoder <= trainable


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_save_load_attach_reproduces_the_outputs(tiny_model, tmp_path, preset):
    handle = attach(tiny_model.sam, spec_from_preset(preset, TINY.depth))
    _perturb(handle)
    trained = sam_forward(tiny_model.sam, TINY.img_size)
    path = Adapter.from_attached(handle, tiny_model, metrics={"val_msa": 0.5}).save(
        tmp_path / f"{preset}.safetensors"
    )
    handle.detach()

    adapter = Adapter.load(path)
    assert adapter.spec.preset == preset and adapter.metrics == {"val_msa": 0.5}
    adapter.attach_to(tiny_model)
    _assert_same_outputs(sam_forward(tiny_model.sam, TINY.img_size), trained)


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_detach_restores_the_base_exactly(tiny_sam, preset):
    base_state = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    base_modules = [type(m) for m in tiny_sam.modules()]
    base_flags = {n: p.requires_grad for n, p in tiny_sam.named_parameters()}
    base_out = sam_forward(tiny_sam, TINY.img_size)

    handle = attach(tiny_sam, spec_from_preset(preset, TINY.depth))
    _perturb(handle)
    assert not torch.equal(sam_forward(tiny_sam, TINY.img_size)["masks"], base_out["masks"])
    handle.detach()

    assert attached_to(tiny_sam) is None
    assert [type(m) for m in tiny_sam.modules()] == base_modules
    state = tiny_sam.state_dict()
    assert state.keys() == base_state.keys()
    for key, value in base_state.items():
        assert torch.equal(state[key], value), key
    assert {n: p.requires_grad for n, p in tiny_sam.named_parameters()} == base_flags
    _assert_same_outputs(sam_forward(tiny_sam, TINY.img_size), base_out)


@pytest.mark.parametrize("preset", MERGEABLE)
def test_merged_checkpoint_equals_the_attached_model(tiny_sam, tmp_path, preset):
    handle = attach(tiny_sam, spec_from_preset(preset, TINY.depth))
    _perturb(handle)
    attached_out = sam_forward(tiny_sam, TINY.img_size)

    path = tmp_path / "merged.pth"
    torch.save(handle.merged_state_dict(), path)
    plain = build_sam(TINY)
    plain.load_state_dict(torch.load(path, weights_only=True), strict=True)  # a plain SAM state dict
    _assert_same_outputs(sam_forward(plain, TINY.img_size), attached_out, atol=1e-4)
    assert attached_to(tiny_sam) is handle  # merging leaves the live model as it was


def test_adaptformer_cannot_be_merged_and_says_why(tiny_sam):
    handle = attach(tiny_sam, spec_from_preset("adaptformer", TINY.depth))
    with pytest.raises(MergeNotSupportedError, match="non-linear"):
        handle.merged_state_dict()
