"""Pick a preset from the device and its free memory, following the paper's recipe.

The paper: memory and time are set by how far back the backward pass reaches, so when
memory is short, adapt only late blocks; on a CPU, avoid backpropagating through the
image encoder at all (train the decoder from cached embeddings) or adapt only the last
block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sam.architecture import VIT_B, Architecture
from ..sam.registry import family_for


@dataclass(frozen=True)
class Recommendation:
    """A preset (and block selection, None: the preset's), why, and a learning rate."""

    preset: str
    blocks: str | None
    reason: str
    lr: float = 1e-5  # the paper's learning rate for SAM-sized models


_GIB = 1024**3


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
    size = family_for(architecture).relative_compute(architecture)  # vit_b 1, vit_l ~3.5, the demo far less
    if device.type == "cpu":
        if size < 0.1:
            return Recommendation(
                "late_lora",
                None,
                "CPU with a small model: LoRA in the later half of the blocks; the earlier blocks run once per "
                "image, so a step costs only the adapted blocks and the decoder. A small model with few "
                "annotations learns faster at lr 1e-3.",
                lr=1e-3,
            )
        return Recommendation(
            "freeze_encoder",
            None,
            "CPU: backpropagating through the image encoder takes tens of seconds per step, so only the "
            "prompt encoder and mask decoder train, from the cached image embeddings (seconds per step).",
        )
    if device.type == "mps":
        return Recommendation(
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
        return Recommendation(
            "lora", None, f"{gib:.0f} GiB free: enough for LoRA on every block (the paper's standard setting)."
        )
    if scaled >= 16:
        return Recommendation(
            "late_lora",
            None,
            f"{gib:.0f} GiB free: LoRA on the second half of the blocks reaches full-model quality "
            "with less memory and time (the paper's recommendation).",
        )
    if scaled >= 8:
        return Recommendation(
            "late_ft",
            "last 1",
            f"{gib:.0f} GiB free: full finetuning of the last block only (micro_sam's 8-14 GB GPU setting).",
        )
    return Recommendation(
        "freeze_encoder",
        None,
        f"Only {gib:.1f} GiB free: the encoder stays frozen and only the decoder trains, from cached embeddings.",
    )
