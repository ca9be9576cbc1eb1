"""SAM 2.1's Hiera encoder in stages: a stage's input carries the stage outputs finished before it, so
frozen early blocks run once per image (training, and re-embedding after a hot reload)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam_peft.core.peft import attach, frozen_prefix_stages, spec_from_preset
from napari_sam_peft.core.sam.architecture import build_sam
from napari_sam_peft.core.sam.hiera_architecture import HVIT_T, TINY_HIERA
from napari_sam_peft.core.sam.hiera_stages import carry_shapes
from napari_sam_peft.core.sam.stages import StageInputCapture, run_stages, stage_count


@pytest.mark.parametrize("split", range(TINY_HIERA.depth + 3))
def test_two_runs_split_anywhere_equal_the_whole_encoder_and_the_capture_keeps_the_split_input(tiny_sam2, split):
    assert stage_count(tiny_sam2) == TINY_HIERA.depth + 2  # the stem, each block, the neck
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), StageInputCapture(tiny_sam2, split) as capture:
        whole = tiny_sam2.image_encoder(x)
    with torch.no_grad():
        kept = run_stages(tiny_sam2.image_encoder, x, 0, split)
        torch.testing.assert_close(run_stages(tiny_sam2.image_encoder, kept, split), whole)
    if split > 0:
        torch.testing.assert_close(capture.captured, kept)


def test_a_late_adapter_leaves_the_early_stages_to_run_once_and_their_carry_is_the_multi_scale_one():
    sam = build_sam(HVIT_T, device="meta")
    handle = attach(sam, spec_from_preset("late_lora", HVIT_T.depth))
    first = HVIT_T.depth // 2  # late = the second half of the blocks
    assert frozen_prefix_stages(handle.sam) == first + 1  # the stem is stage 0
    block_input, finished = carry_shapes(sam.image_encoder, first)
    assert block_input == (64, 64, 384)  # stage 3's grid and width at 1024 px
    assert finished == [(96, 256, 256), (192, 128, 128)]  # stages 1 and 2, which the neck reads


def test_training_through_the_cache_gives_the_gradients_of_the_whole_encoder(tiny_sam2):
    attach(tiny_sam2, spec_from_preset("late_lora", TINY_HIERA.depth))
    stage = frozen_prefix_stages(tiny_sam2)
    assert 0 < stage < stage_count(tiny_sam2)
    x = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    adapted = [p for n, p in tiny_sam2.named_parameters() if p.requires_grad and n.startswith("image_encoder.")]
    assert adapted
    for p in adapted:  # LoRA's B starts at zero: move it so gradients reach A too
        torch.nn.init.normal_(p, std=0.02)
    grads = []
    for cached in (False, True):
        tiny_sam2.zero_grad()
        if cached:
            with torch.no_grad():
                kept = run_stages(tiny_sam2.image_encoder, x, 0, stage)
            out = run_stages(tiny_sam2.image_encoder, kept, stage)
        else:
            out = tiny_sam2.image_encoder(x)
        out.square().mean().backward()
        grads.append([p.grad.clone() for p in adapted])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert any(np.abs(g.numpy()).sum() > 0 for g in grads[1])


def test_freeze_encoder_trains_sam2s_high_resolution_projections_through_the_cached_neck(tiny_sam2):
    from napari_sam_peft.core.annotation.stage_inputs import StageInputs

    attach(tiny_sam2, spec_from_preset("freeze_encoder", TINY_HIERA.depth))
    stage = frozen_prefix_stages(tiny_sam2)
    assert stage == stage_count(tiny_sam2) - 1  # the neck runs at each step: it feeds conv_s0 and conv_s1
    image = (np.random.default_rng(0).random((100, 120)) * 255).astype(np.uint8)
    inputs = StageInputs(tiny_sam2, [image], stage)
    inputs.features(0).square().mean().backward()
    decoder = tiny_sam2.sam_mask_decoder
    assert decoder.conv_s0.weight.grad.abs().sum() > 0 and decoder.conv_s1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_sam2.image_encoder.parameters())  # the encoder stays frozen
