"""One contract for every preset, table-driven (rows: presets; the same assertions for each), on a
small model of each encoder family: SAM's ViT, TinyViT (micro_sam's vit_t, LiteMedSAM) and SAM 2.1's
Hiera (micro_sam dev's hvit_*)."""

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
from napari_sam_peft.core.peft.attachment import base_name
from napari_sam_peft.core.sam.architecture import TINY, build_sam
from napari_sam_peft.core.sam.hiera_architecture import TINY_HIERA
from napari_sam_peft.core.sam.loading import LoadedModel, model_identity
from napari_sam_peft.core.sam.registry import family_for
from napari_sam_peft.core.sam.tiny_vit import TINY_VIT_TEST
from tests.conftest import sam_forward, sam_train_loss

ARCHITECTURES = {"vit": TINY, "tiny_vit": TINY_VIT_TEST, "hiera": TINY_HIERA}


def _in_late_blocks(name, arch):
    """Whether a parameter lies in the second half of the encoder's blocks (``late_ft``'s)."""
    encoder = build_sam(arch, device="meta").image_encoder
    late = family_for(arch).block_paths(encoder)[arch.depth // 2 :]
    return any(name.startswith(f"image_encoder.{path}.") for path in late)


def _in_norms(name, arch):
    return any(f".{norm}." in name for norm in family_for(arch).layout.norms)


# What each preset may train inside the image encoder (names as in plain SAM; the rule sees the
# architecture), and whether the prompt encoder and mask decoder train. "added" means only
# tensors the method adds.
INTENT = {
    "full_ft": (lambda n, a: True, True),
    "freeze_encoder": (lambda n, a: False, True),
    "ln_tune": (_in_norms, True),
    "bias_tune": (lambda n, a: n.endswith(".bias"), True),
    "attn_tune": (lambda n, a: ".attn." in n, True),
    "ssf": ("added", True),
    "fact": ("added", True),
    "lora": ("added", True),
    "adaptformer": ("added", True),
    "late_lora": ("added", True),
    "late_ft": (_in_late_blocks, True),
    "decoder_lora": ("added", False),
}
CPU_PRESETS = [p for p in PRESETS if p != "qlora"]
MERGEABLE = [p for p in CPU_PRESETS if p != "adaptformer"]


@pytest.fixture(params=sorted(ARCHITECTURES))
def arch(request):
    """The small model of each encoder family."""
    return ARCHITECTURES[request.param]


@pytest.fixture
def sam(arch):
    torch.manual_seed(0)
    return build_sam(arch)


@pytest.fixture
def model(sam, arch) -> LoadedModel:
    return LoadedModel(sam=sam, identity=model_identity(sam, arch.name), architecture=arch, source="test")


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
def test_output_is_unchanged_at_initialisation(arch, sam, preset):
    before = sam_forward(sam, arch.img_size)
    attach(sam, spec_from_preset(preset, arch.depth))
    after = sam_forward(sam, arch.img_size)
    for key in before:
        assert (after[key] - before[key]).abs().max() <= 1e-5, key


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_gradients_reach_only_the_intended_tensors(arch, sam, preset):
    original = {n for n, _ in sam.named_parameters()}
    handle = attach(sam, spec_from_preset(preset, arch.depth))
    _perturb(handle)  # so that e.g. LoRA's A receives a non-zero gradient through B
    sam.train()
    sam_train_loss(sam, arch.img_size).backward()

    trainable = set(handle.trainable_names)
    assert trainable, "a method that trains nothing"
    prefixes = family_for(arch).decoder_prefixes  # the prompt encoder's and the mask decoder's
    decoder = prefixes[1]
    encoder_rule, trains_decoder = INTENT[preset]
    for name, param in sam.named_parameters():
        plain = base_name(name)
        assert param.requires_grad == (name in trainable), name
        if name not in trainable:
            assert param.grad is None, f"{preset}: frozen {name} received a gradient"
            continue
        if name.startswith(("image_encoder.", f"{decoder}transformer.")):
            assert param.grad is not None, f"{preset}: trainable {name} received no gradient"
        if plain not in original:  # a tensor the method added
            assert encoder_rule == "added", f"{preset} added {name}"
        elif plain.startswith(prefixes):
            assert trains_decoder, f"{preset} trains the decoder tensor {name}"
        else:
            assert encoder_rule != "added" and encoder_rule(plain, arch), f"{preset} trains {name}"
    if trains_decoder:
        decoder_names = {n for n, _ in sam.named_parameters() if n.startswith(decoder) and ".base." not in n}
        assert decoder_names <= trainable


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_save_load_attach_reproduces_the_outputs(arch, model, tmp_path, preset):
    handle = attach(model.sam, spec_from_preset(preset, arch.depth))
    _perturb(handle)
    trained = sam_forward(model.sam, arch.img_size)
    path = Adapter.from_attached(handle, model, metrics={"val_msa": 0.5}).save(tmp_path / f"{preset}.safetensors")
    handle.detach()

    adapter = Adapter.load(path)
    assert adapter.spec.preset == preset and adapter.metrics == {"val_msa": 0.5}
    adapter.attach_to(model)
    _assert_same_outputs(sam_forward(model.sam, arch.img_size), trained)


@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_detach_restores_the_base_exactly(arch, sam, preset):
    base_state = {k: v.clone() for k, v in sam.state_dict().items()}
    base_modules = [type(m) for m in sam.modules()]
    base_flags = {n: p.requires_grad for n, p in sam.named_parameters()}
    base_out = sam_forward(sam, arch.img_size)

    handle = attach(sam, spec_from_preset(preset, arch.depth))
    _perturb(handle)
    assert not torch.equal(sam_forward(sam, arch.img_size)["masks"], base_out["masks"])
    handle.detach()

    assert attached_to(sam) is None
    assert [type(m) for m in sam.modules()] == base_modules
    state = sam.state_dict()
    assert state.keys() == base_state.keys()
    for key, value in base_state.items():
        assert torch.equal(state[key], value), key
    assert {n: p.requires_grad for n, p in sam.named_parameters()} == base_flags
    _assert_same_outputs(sam_forward(sam, arch.img_size), base_out)


@pytest.mark.parametrize("preset", MERGEABLE)
def test_merged_checkpoint_equals_the_attached_model(arch, sam, tmp_path, preset):
    handle = attach(sam, spec_from_preset(preset, arch.depth))
    _perturb(handle)
    attached_out = sam_forward(sam, arch.img_size)

    path = tmp_path / "merged.pth"
    torch.save(handle.merged_state_dict(), path)
    plain = build_sam(arch)
    plain.load_state_dict(torch.load(path, weights_only=True), strict=True)  # a plain SAM state dict
    _assert_same_outputs(sam_forward(plain, arch.img_size), attached_out, atol=1e-4)
    assert attached_to(sam) is handle  # merging leaves the live model as it was


def test_adaptformer_cannot_be_merged_and_says_why(arch, sam):
    handle = attach(sam, spec_from_preset("adaptformer", arch.depth))
    with pytest.raises(MergeNotSupportedError, match="non-linear"):
        handle.merged_state_dict()
