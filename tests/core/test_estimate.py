"""The pre-run estimate: the paper's ordering of methods by cost, and what it counts."""

from __future__ import annotations

from napari_sam_peft.core.architecture import VIT_B
from napari_sam_peft.core.estimate import estimate_training, first_trained_stage
from napari_sam_peft.core.peft import count_trainable_parameters, spec_from_preset

RATE = 1e11  # a fixed device speed, so the test measures nothing


def _estimate(preset, blocks=None):
    spec = spec_from_preset(preset, VIT_B.depth, blocks=blocks)
    return estimate_training(spec, VIT_B, "cpu", objects_per_image=8, flops_per_second=RATE)


def test_cost_follows_how_far_back_the_backward_pass_reaches():
    frozen, last, late, every = (
        _estimate("freeze_encoder"),
        _estimate("late_ft", "11"),
        _estimate("late_lora"),
        _estimate("lora"),
    )
    assert frozen.seconds_per_step < last.seconds_per_step < late.seconds_per_step < every.seconds_per_step
    assert frozen.memory_bytes < last.memory_bytes < late.memory_bytes < every.memory_bytes
    assert 3 * 2**30 < frozen.memory_bytes < every.memory_bytes < 40 * 2**30  # vit_b: gigabytes, not MB or TB


def test_the_estimate_counts_the_trainable_parameters_and_the_first_adapted_stage():
    spec = spec_from_preset("late_lora", VIT_B.depth)
    estimate = _estimate("late_lora")
    assert estimate.trainable_params == count_trainable_parameters(spec, VIT_B)
    assert estimate.first_trained_stage == first_trained_stage(spec, VIT_B) == 6 + 1
    assert first_trained_stage(spec_from_preset("decoder_lora", VIT_B.depth), VIT_B) == VIT_B.depth + 2
    assert first_trained_stage(spec_from_preset("ssf", VIT_B.depth), VIT_B) == 0  # SSF scales the patch embedding
    assert "for 100 steps" in estimate.describe(100)
