"""Pick a preset from the device and its free memory, following the paper's recipe.

The paper: memory and time are set by how far back the backward pass reaches, so when
memory is short, adapt only late blocks; on a CPU, avoid backpropagating through the
image encoder at all (train the decoder from cached embeddings) or adapt only the last
block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..sam.architecture import VIT_B, Architecture
from ..sam.registry import family_for
from ..sam.tiny_vit import VIT_T
from .methods import get_method

#: TinyViT's encoder compute as a share of vit_b's (about 8%)
_TINY_VIT_SHARE = family_for(VIT_T).relative_compute(VIT_T)


@dataclass(frozen=True)
class Recommendation:
    """A preset (and block selection, None: the preset's), why, and a learning rate."""

    preset: str
    blocks: str | None
    reason: str
    lr: float = 1e-5  # the paper's learning rate for SAM-sized models


_GIB = 1024**3


def recommended_lr(method: str, architecture: Architecture) -> float:
    """The AdamW learning rate for a run of a few hundred steps of ``method`` on ``architecture``.

    The paper's 1e-5 is for 50,000 steps on an A100; in a few hundred steps it barely moves the
    model (the demo model's held-out Box mSA gained 0.009 at 1e-5 and 0.051 at 1e-3). Tensors a
    method adds start at zero and take a larger rate than pretrained weights; the small demo model
    takes the largest, 1e-3. On real pretrained weights 1e-3 is too much even for LoRA: LiteMedSAM's
    late_lora peaked at step 10 and lowered I_B (-0.07), while 1e-4 gave Box +0.30 and I_B +0.05
    in 40 steps (docs/finetune_results.md).
    """
    size = family_for(architecture).relative_compute(architecture)
    if size < 0.02:
        return 1e-3
    if get_method(method).trains_added_only or size < 0.2:
        return 1e-4
    return 1e-5


#: passes over the training objects a run of the recommended length makes
PASSES_OVER_OBJECTS = 25
#: the recommended step count stays within these bounds, in multiples of STEP_ROUNDING
MIN_STEPS, MAX_STEPS, STEP_ROUNDING = 100, 1000, 50


def recommended_steps(train_objects: int, objects_per_image: int, passes: float = PASSES_OVER_OBJECTS) -> int:
    """The number of training steps for a run on ``train_objects`` annotated objects.

    About ``passes`` (:data:`PASSES_OVER_OBJECTS`; a recipe says) passes over the objects (a step
    draws ``objects_per_image`` of one image's objects), rounded up to a multiple of 50 and kept
    within 100-1000: 57 objects (three generated images) at 8 per step give 200 steps, where every
    preset the recommender picks improved held-out scores on the demo model and LiteMedSAM
    (docs/finetune_results.md). More steps do not hurt quality: the run keeps its best adapter by
    validation and stops early when validation stops improving.
    """
    steps = passes * max(train_objects, 0) / max(objects_per_image, 1)
    rounded = math.ceil(steps / STEP_ROUNDING) * STEP_ROUNDING
    return min(max(rounded, MIN_STEPS), MAX_STEPS)


def free_memory_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device; None where it cannot be asked."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return None


def recommend_preset(
    device: str | torch.device,
    architecture: Architecture = VIT_B,
    free_memory: int | None = None,
) -> Recommendation:
    """Recommend a preset (and block selection) for training on ``device``.

    ``free_memory`` in bytes; for CUDA it is asked from the device when not given.
    Thresholds are the paper's A100 measurements for vit_b, scaled by encoder size.
    """
    device = torch.device(device)
    pick = _recommend(device, architecture, free_memory)
    return Recommendation(pick.preset, pick.blocks, pick.reason, recommended_lr(pick.method, architecture))


@dataclass(frozen=True)
class _Pick:
    preset: str
    blocks: str | None
    reason: str

    @property
    def method(self) -> str:
        from .presets import PRESETS

        return PRESETS[self.preset].method


def _recommend(device: torch.device, architecture: Architecture, free_memory: int | None) -> _Pick:
    size = family_for(architecture).relative_compute(architecture)  # vit_b 1, vit_l ~3.5, TinyViT 0.08
    if device.type == "cpu":
        if size < 0.1:
            return _Pick(
                "late_lora",
                None,
                "CPU with a small encoder: LoRA in the later half of the blocks; the earlier blocks run once "
                "per image, so a step costs only the adapted blocks and the decoder.",
            )
        return _Pick(
            "freeze_encoder",
            None,
            "CPU: backpropagating through this image encoder takes tens of seconds per step, so only the "
            "prompt encoder and mask decoder train, from the cached image embeddings. On a CPU prefer a "
            "TinyViT model (vit_t_lm, vit_t_em_organelles or the bundled lite_medsam): its encoder costs "
            f"{_TINY_VIT_SHARE:.0%} of vit_b's per image, so embedding and LoRA training both become practical.",
        )
    if device.type == "mps":
        return _Pick(
            "late_ft",
            "last 1",
            "Apple GPU: unified memory is shared with the system; training only the last block keeps the "
            "backward pass short (micro_sam's low-memory setting).",
        )
    if free_memory is None:
        free_memory = free_memory_bytes(device)
    gib = (free_memory or 0) / _GIB
    scaled = gib / max(size, 1e-6)
    if scaled >= 40:
        return _Pick(
            "lora", None, f"{gib:.0f} GiB free: enough for LoRA on every block (the paper's standard setting)."
        )
    if scaled >= 16:
        return _Pick(
            "late_lora",
            None,
            f"{gib:.0f} GiB free: LoRA on the second half of the blocks reaches full-model quality "
            "with less memory and time (the paper's recommendation).",
        )
    if scaled >= 8:
        return _Pick(
            "late_ft",
            "last 1",
            f"{gib:.0f} GiB free: full finetuning of the last block only (micro_sam's 8-14 GB GPU setting).",
        )
    return _Pick(
        "freeze_encoder",
        None,
        f"Only {gib:.1f} GiB free: the encoder stays frozen and only the decoder trains, from cached embeddings.",
    )
