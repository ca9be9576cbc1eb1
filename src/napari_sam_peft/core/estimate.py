"""A rough estimate of a run's memory and time, shown before it starts.

Compute is counted from the architecture: only the encoder stages from the first adapted
one run at each step (forward and backward, about 3x a forward pass), plus the prompt
encoder and mask decoder once per object and prompt round. Memory is the weights, the
trainable parameters' gradients and AdamW state, and the activations of the trained
stages (attention maps included). The device's speed comes from a short matrix-multiply
probe. The estimate is meant to tell minutes from hours and fits from does-not-fit;
docs/benchmarks.md compares it with measured runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache

import torch

from .architecture import SamArchitecture
from .peft import PeftSpec

_BYTES = 4  # float32
ENCODER_EFFICIENCY = 1 / 2.8  # fraction of the probe's speed that encoder blocks reach
DECODER_EFFICIENCY = 1 / 4.5  # the mask decoder's many small operations reach less


@dataclass(frozen=True)
class TrainingEstimate:
    trainable_params: int
    first_trained_stage: int  # encoder stages before it run once per image, not per step
    memory_bytes: int
    seconds_per_step: float

    def describe(self, steps: int) -> str:
        total = self.seconds_per_step * steps
        return (
            f"{self.trainable_params:,} parameters train; about {self.memory_bytes / 1024**3:.1f} GiB, "
            f"{self.seconds_per_step:.2f} s per step, {_duration(total)} for {steps} steps"
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def first_trained_stage(spec: PeftSpec, architecture: SamArchitecture) -> int:
    """The first encoder stage ``spec`` adapts (``depth + 2``: the encoder stays frozen)."""
    return _meta_counts(spec, architecture)[2]


def _meta_counts(spec: PeftSpec, architecture: SamArchitecture) -> tuple[int, int, int]:
    """(all parameters, trainable parameters, first trained encoder stage), on the meta device."""
    from dataclasses import replace

    from .architecture import build_sam
    from .encoder_split import frozen_prefix_stages
    from .peft import attach

    sam = build_sam(architecture, device="meta")
    if spec.options.get("quantize"):  # counts like LoRA: quantisation changes storage only
        spec = replace(spec, options={**spec.options, "quantize": False})
    handle = attach(sam, spec)
    return sum(p.numel() for p in sam.parameters()), handle.num_trainable(), frozen_prefix_stages(sam)


@cache
def device_flops_per_second(device: str) -> float:
    """Sustained float32 matmul throughput of a device (a ~0.1 s probe, measured once)."""
    target = torch.device(device)
    n = 512
    a = torch.randn(n, n, device=target)
    b = torch.randn(n, n, device=target)
    for _ in range(2):
        a @ b
    _sync(target)
    repeats, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.1:
        a @ b
        repeats += 1
    _sync(target)
    elapsed = time.perf_counter() - start
    return 2 * n**3 * repeats / elapsed


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def estimate_training(
    spec: PeftSpec,
    architecture: SamArchitecture,
    device: str = "cpu",
    objects_per_image: int = 8,
    sub_iterations: int = 8,
    flops_per_second: float | None = None,
) -> TrainingEstimate:
    a = architecture
    total_params, trainable, stage = _meta_counts(spec, a)
    tokens = (a.img_size // a.patch_size) ** 2
    d, dim = a.embed_dim, a.prompt_embed_dim
    window_tokens = a.window_size**2 if a.window_size else tokens
    trained_blocks = [i for i in range(a.depth) if i + 1 >= stage]
    block_flops, activations = 0.0, 0.0
    for index in trained_blocks:
        attended = tokens if index in a.global_attn_indexes else window_tokens
        block_flops += 2 * tokens * 12 * d * d + 4 * tokens * attended * d
        activations += tokens * d * 16 + tokens * attended * a.num_heads
    neck = 2 * tokens * (d * dim + dim * dim * 9) if stage <= a.depth + 1 else 0.0
    # image-side projections of the two-way transformer and the upscaling, per object and pass
    decoder_per_pass = 2 * tokens * dim * dim * 4 + 2 * tokens * dim * dim // 4
    decoder = decoder_per_pass * objects_per_image * (2 + sub_iterations + 2)  # box, 3 point masks, corrections
    rate = flops_per_second or device_flops_per_second(str(device))
    # Real layers run below the matmul probe's speed; calibrated on vit_b (benchmarks/training.py).
    seconds = 3 * ((block_flops + neck) / ENCODER_EFFICIENCY + decoder / DECODER_EFFICIENCY) / rate
    # Autograd keeps about 160 MB per object and decoder pass on vit_b (measured), scaled by tokens.
    decoder_activations = objects_per_image * (2 + sub_iterations) * tokens * dim * 40
    training = _BYTES * (total_params + 3 * trainable + activations + decoder_activations)
    # Running the frozen stages once per image holds three attention-sized tensors of a global block.
    prepare = _BYTES * (total_params + 3 * a.num_heads * tokens**2) if stage > 0 else 0
    memory = max(training, prepare)
    return TrainingEstimate(trainable, stage, int(memory), seconds)
