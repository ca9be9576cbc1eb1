"""Same numbers as micro_sam: LoRA equivalence, checkpoint import, merged export loads there."""

from __future__ import annotations

import copy

import pytest
import torch
from micro_sam.models.peft_sam import AdaptFormer as MicroSamAdaptFormer
from micro_sam.models.peft_sam import FacTSurgery, LoRASurgery, PEFT_Sam, SSFSurgery

from napari_sam_peft.core.errors import InvalidCheckpointError
from napari_sam_peft.core.peft import attach, spec_from_preset
from napari_sam_peft.core.peft.micro_sam_import import import_micro_sam_checkpoint
from napari_sam_peft.core.sam.architecture import TINY, VIT_B, build_sam
from napari_sam_peft.core.sam.loading import LoadedModel, model_identity
from tests.conftest import sam_forward


def _randomise_adapters(module, seed=3):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if any(k in name for k in ("w_a_linear", "w_b_linear", "FacT", ".scale", ".shift")):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1 + (1.0 if name.endswith("scale") else 0))


@pytest.mark.parametrize(
    ("update", "blocks", "ours"),
    [
        (["q", "v"], None, {"targets": ("q", "v")}),
        (["q", "k", "v", "mlp"], [2, 3], {"targets": ("q", "k", "v", "mlp")}),
    ],
)
def test_lora_with_alpha_equal_rank_matches_micro_sam_peft_sam(tiny_sam, update, blocks, ours):
    rank = 4
    theirs = PEFT_Sam(
        copy.deepcopy(tiny_sam),
        rank=rank,
        peft_module=LoRASurgery,
        attention_layers_to_update=blocks,
        update_matrices=update,
    ).sam
    _randomise_adapters(theirs)

    spec = spec_from_preset(
        "lora", TINY.depth, blocks=tuple(blocks) if blocks else "all", rank=rank, alpha=rank, **ours
    )
    handle = attach(tiny_sam, spec)
    mine = dict(tiny_sam.named_parameters())
    for name, value in theirs.named_parameters():
        if "w_a_linear" in name or "w_b_linear" in name:
            target = (
                name.replace("qkv.w_a_linear_", "qkv.lora_a_")
                .replace("qkv.w_b_linear_", "qkv.lora_b_")
                .replace("mlp.w_a_linear_1.weight", "mlp.lin1.lora_a")
                .replace("mlp.w_b_linear_1.weight", "mlp.lin1.lora_b")
                .replace("mlp.w_a_linear_2.weight", "mlp.lin2.lora_a")
                .replace("mlp.w_b_linear_2.weight", "mlp.lin2.lora_b")
                .replace(".weight", "")
            )
            with torch.no_grad():
                mine[target].copy_(value)
    assert handle.num_trainable() == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    expected, got = sam_forward(theirs, TINY.img_size), sam_forward(tiny_sam, TINY.img_size)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("module", "kwargs"),
    [
        (LoRASurgery, {"rank": 4}),
        (LoRASurgery, {"rank": 4, "update_matrices": ["q", "k", "v", "mlp"], "attention_layers_to_update": [3]}),
        (FacTSurgery, {"rank": 4}),
        (SSFSurgery, {"rank": 1}),
    ],
)
def test_micro_sam_peft_checkpoint_imports_as_an_equivalent_adapter(tiny_sam, tmp_path, module, kwargs):
    base = LoadedModel(tiny_sam, model_identity(tiny_sam, "tiny"), TINY, "test")
    theirs = PEFT_Sam(copy.deepcopy(tiny_sam), peft_module=module, **kwargs).sam.eval()
    _randomise_adapters(theirs)
    with torch.no_grad():  # micro_sam also trains the decoder
        theirs.mask_decoder.iou_token.weight.add_(0.5)
    path = tmp_path / "checkpoint.pt"
    torch.save({"model_state": {f"sam.{k}": v for k, v in theirs.state_dict().items()}}, path)

    adapter = import_micro_sam_checkpoint(path, base)
    adapter.attach_to(base)
    expected, got = sam_forward(theirs, TINY.img_size), sam_forward(tiny_sam, TINY.img_size)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-5)


def test_import_refuses_a_checkpoint_from_another_base_model(tiny_sam, tmp_path):
    theirs = PEFT_Sam(copy.deepcopy(tiny_sam), rank=4, peft_module=LoRASurgery).sam
    torch.manual_seed(99)
    other_base = build_sam(TINY)
    base = LoadedModel(other_base, model_identity(other_base, "other"), TINY, "test")
    before = {k: v.clone() for k, v in other_base.state_dict().items()}
    with pytest.raises(InvalidCheckpointError, match="another base model"):
        import_micro_sam_checkpoint(theirs.state_dict(), base)
    assert all(torch.equal(other_base.state_dict()[k], v) for k, v in before.items())


def test_import_refuses_micro_sams_adaptformer_with_the_reason(tiny_sam):
    theirs = PEFT_Sam(copy.deepcopy(tiny_sam), rank=1, peft_module=MicroSamAdaptFormer).sam
    base = LoadedModel(tiny_sam, model_identity(tiny_sam, "tiny"), TINY, "test")
    with pytest.raises(InvalidCheckpointError, match="extra residual"):
        import_micro_sam_checkpoint(theirs.state_dict(), base)


@pytest.mark.slow
def test_merged_vit_b_export_loads_in_micro_sam_and_segment_anything(tmp_path):
    from micro_sam.util import get_sam_model
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sam = build_sam(VIT_B)
    handle = attach(sam, spec_from_preset("late_lora", VIT_B.depth, blocks="11"))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(0.01)
    merged = handle.merged_state_dict()
    path = tmp_path / "merged_vit_b.pth"
    torch.save(merged, path)

    _, micro = get_sam_model(model_type="vit_b", checkpoint_path=str(path), device="cpu", return_sam=True)
    original = sam_model_registry["vit_b"](checkpoint=str(path))
    for model in (micro, original):
        state = model.state_dict()
        assert all(torch.equal(state[k], merged[k]) for k in merged)
