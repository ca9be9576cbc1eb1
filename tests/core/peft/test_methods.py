"""One contract for every preset, table-driven (rows: presets; the same assertions for each)."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.peft import (
    PRESETS,
    Adapter,
    MergeNotSupportedError,
    QuantizationUnavailableError,
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


@pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA runs on CUDA machines")
def test_qlora_off_cuda_says_why_and_leaves_the_model_unchanged(tiny_sam):
    before = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    with pytest.raises(QuantizationUnavailableError, match="NVIDIA GPU.*'lora'"):
        attach(tiny_sam, spec_from_preset("qlora", TINY.depth))
    assert attached_to(tiny_sam) is None
    assert all(torch.equal(tiny_sam.state_dict()[k], v) for k, v in before.items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_qlora_on_cuda_quantises_trains_and_detaches():
    pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    sam = build_sam(TINY).cuda()
    base = {k: v.clone() for k, v in sam.state_dict().items()}
    handle = attach(sam, spec_from_preset("qlora", TINY.depth))
    assert any("Linear4bit" in type(m).__name__ for m in sam.image_encoder.modules())
    sam.train()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, TINY.img_size, TINY.img_size, generator=generator).cuda()
    sam.image_encoder(image).mean().backward()
    encoder_lora = [n for n in handle.trainable_names if n.startswith("image_encoder.")]
    params = dict(sam.named_parameters())
    assert encoder_lora and all(params[n].grad is not None for n in encoder_lora)
    merged = handle.merged_state_dict()
    assert set(merged) == set(base)
    handle.detach()
    assert all(torch.equal(sam.state_dict()[k], v) for k, v in base.items())


def test_blocks_override_places_the_method_anywhere(tiny_sam):
    handle = attach(tiny_sam, spec_from_preset("lora", TINY.depth, blocks="last 1"))
    encoder = [n for n in handle.trainable_names if n.startswith("image_encoder")]
    assert encoder and all(n.startswith("image_encoder.blocks.3.") for n in encoder)


def test_lora_alpha_scales_the_update(tiny_sam):
    spec_1 = spec_from_preset("lora", TINY.depth, rank=4, alpha=4)
    spec_2 = spec_from_preset("lora", TINY.depth, rank=4, alpha=8)
    handle = attach(tiny_sam, spec_1)
    qkv = tiny_sam.image_encoder.blocks[0].attn.qkv
    assert qkv.scale == 1.0
    handle.detach()
    attach(tiny_sam, spec_2)
    assert tiny_sam.image_encoder.blocks[0].attn.qkv.scale == 2.0


def test_attaching_twice_is_refused(tiny_sam):
    attach(tiny_sam, spec_from_preset("lora", TINY.depth))
    with pytest.raises(Exception, match="already carries an adapter"):
        attach(tiny_sam, spec_from_preset("ssf", TINY.depth))
