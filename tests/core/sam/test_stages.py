"""The ViT encoder in stages: patch embedding, one stage per block, the neck."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.sam.architecture import TINY
from napari_sam_peft.core.sam.stages import StageInputCapture, first_stage_touched, run_stages, stage_count


@pytest.mark.parametrize("split", [0, 1, TINY.depth, TINY.depth + 2])
def test_two_runs_split_anywhere_equal_the_whole_encoder_and_the_capture_keeps_the_split_input(tiny_sam, split):
    assert stage_count(tiny_sam) == TINY.depth + 2
    x = torch.rand(1, 3, TINY.img_size, TINY.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), StageInputCapture(tiny_sam, split) as capture:
        whole = tiny_sam.image_encoder(x)
    with torch.no_grad():
        kept = run_stages(tiny_sam.image_encoder, x, 0, split)
        torch.testing.assert_close(run_stages(tiny_sam.image_encoder, kept, split), whole)
    torch.testing.assert_close(capture.captured, kept)


@pytest.mark.parametrize(
    ("names", "stage"),
    [
        (["image_encoder.patch_embed.proj.weight"], 0),
        (["image_encoder.blocks.2.mlp.lin1.bias", "image_encoder.blocks.3.attn.qkv"], 3),
        (["image_encoder.neck.0.weight"], TINY.depth + 1),
        (["mask_decoder.iou_prediction_head.layers.0.weight"], TINY.depth + 2),
    ],
    ids=["patch-embed", "earliest-block", "neck", "decoder-only"],
)
def test_the_first_stage_touched_is_the_earliest_encoder_stage_named(tiny_sam, names, stage):
    assert first_stage_touched(tiny_sam, names) == stage
