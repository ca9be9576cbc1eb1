"""SAM's ViT family: named sizes, reading an architecture off a state dict, its stages and cost."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from napari_sam_peft.core.errors import InvalidCheckpointError
from napari_sam_peft.core.sam.architecture import build_sam
from napari_sam_peft.core.sam.vit import DEMO, TINY, VIT, VIT_B, VIT_H, VIT_L, infer_vit_architecture


@pytest.mark.parametrize("architecture", [TINY, DEMO, VIT_L])
def test_the_architecture_is_read_back_off_its_state_dict_and_json(architecture):
    sam = build_sam(architecture, device="meta")
    # the decoder's head count is not in the shapes: SAM's for the original sizes, else 8
    expected = architecture if architecture is VIT_L else replace(architecture, decoder_num_heads=8)
    assert infer_vit_architecture(sam.state_dict(), name=architecture.name) == expected
    assert VIT.architecture_from_dict(json.loads(architecture.to_json())) == architecture


def test_a_state_dict_without_the_vit_encoder_names_what_is_missing():
    state = build_sam(TINY, device="meta").state_dict()
    del state["image_encoder.patch_embed.proj.weight"]
    with pytest.raises(InvalidCheckpointError, match="patch_embed"):
        infer_vit_architecture(state)


def test_stages_are_the_embedding_each_block_and_the_neck_and_cost_grows_with_size():
    encoder = build_sam(TINY, device="meta").image_encoder
    assert VIT.stages(encoder) == [("patch_embed", "pos_embed"), *[(f"blocks.{i}",) for i in range(4)], ("neck",)]
    assert VIT.relative_compute(VIT_B) == pytest.approx(1.0)
    assert VIT.relative_compute(TINY) < VIT.relative_compute(VIT_B) < VIT.relative_compute(VIT_L)
    assert VIT.relative_compute(VIT_L) < VIT.relative_compute(VIT_H)
