"""A rough estimate of a run's memory and time, shown before it starts.

The estimate counts work from the architecture and the adapter and divides by a fixed, documented
speed per device kind; it measures nothing itself, so the same inputs give the same answer on an idle
and on a busy machine (a timing probe at each estimate read a busy machine as slow and made the
estimate swing 20x with load). Where the model's precision probe (``sam.precision_probe``, run once per
machine and model when the model loads, and cached) has measured a mask-decoder pass, the decoder's
time is that pass times the step's objects and passes: the decoder is 77-85% of a step on a CPU
(docs/benchmarks.md), and no fixed speed fits both a CPU whose bfloat16 is fast and one whose is not.

Time per step is two terms:

- **arithmetic**: the floating-point operations of one step divided by the device's float32
  throughput (:func:`device_throughput`) and an efficiency factor. Only the encoder stages from
  the first adapted one run at each step (the earlier ones run once per image); a stage's
  backward costs its input gradients (1x the forward) plus the weight gradients of the share of
  its weights that trains (up to 1x more), and the attention maps' backward 2x. The prompt
  encoder and mask decoder run once per object and decoder pass (box start, point start, then
  one per correction sub-iteration).
- **per-operation overhead**: every tensor operation costs a fixed time on top of its arithmetic
  (dispatch, autograd bookkeeping, thread wake-up; a kernel launch on a GPU). A step runs about
  1,500 of them per decoder pass, ~250-350 per trained encoder block and ~11 per trainable tensor in
  the AdamW step (counted with a dispatch mode on the demo model). It is why a small model's step
  costs more than its arithmetic says (two thirds of the demo model's step on a CPU, a twentieth of
  vit_b's).

Memory is the weights, the trainable parameters' gradients and AdamW state, and the activations
of the trained stages (attention maps included). The constants are calibrated against measured
steps (docs/benchmarks.md, ``benchmarks/estimate_check.py``): within 2x of the measured step on a
CPU for the demo model and SAM vit_b; GPU figures are conservative and not calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from ..peft import PeftSpec, frozen_prefix_stages, parameter_count
from ..peft.meta_count import attached_on_meta
from ..sam.architecture import Architecture
from ..sam.registry import family_for
from ..sam.stages import encoder_stages

_BYTES = 4  # float32

# Float32 throughput per device kind (FLOP/s), fixed so the estimate measures nothing.
#: One CPU core (torch thread): a conservative sustained float32 matrix-multiply rate of a current
#: x86 server or desktop core (AVX2/AVX-512 FMA at 2-3 GHz peaks at 64-160 GFLOP/s).
CPU_FLOPS_PER_THREAD = 50e9
#: One CUDA streaming multiprocessor: 64 float32 lanes x 2 (fused multiply-add) x 1.5 GHz. Exact for
#: an A100 (19.5 TFLOP/s), low for newer GPUs with 128 lanes per SM (safe: it overestimates time).
CUDA_FLOPS_PER_SM = 64 * 2 * 1.5e9
#: Used when a CUDA device cannot be asked for its properties.
CUDA_FALLBACK_FLOPS = 20e12
#: An Apple GPU: an M1-class figure (larger chips are faster; the estimate stays on the safe side).
MPS_FLOPS = 2.5e12

# The share of that throughput real layers reach (calibrated on the CPU, see the module docstring).
ENCODER_EFFICIENCY = 0.7  # vit_b blocks on 2 threads: ~70 GFLOP/s measured (late_ft 11, late_lora 6-11)
DECODER_EFFICIENCY = 0.8  # the mask decoder per object and pass (between vit_b and the demo model)

# Fixed time per tensor operation (forward or backward), per device kind.
#: CPU: calibrated on the demo model's late_lora step (2.06 s measured by ``napari-sam-peft train`` on
#: 2 idle threads, 2026-11-26), where the decoder's ~15,000 autograd operations per step dominate.
OP_SECONDS = {"cpu": 80e-6, "cuda": 15e-6, "mps": 30e-6}
OPS_PER_DECODER_PASS = 1500  # prompt encoder, two-way transformer (depth 2), upscaling, heads, loss; fwd+bwd
OPS_PER_ENCODER_BLOCK = 250  # one ViT block, forward and backward
OPS_PER_ADAPTED_BLOCK = 100  # more where an adapter wraps the block's layers (LoRA on q, k, v, MLP)
OPS_PER_NECK = 60
OPS_PER_TRAINABLE_TENSOR = 11  # AdamW's per-parameter update

#: A step's decoder time per object and pass, as a multiple of the probe's one-object pass (forward and
#: backward, box prompt): the point start's three masks, the correction points' prompts, their sampling
#: and the loss, one backward pass per decoder pass, and the validations every few steps. Calibrated on
#: LiteMedSAM freeze_encoder steps on 2 cores (bf16): 4.1-4.3 s measured for 4 objects x 6 passes, 10.8-12.8 s
#: for 8 x 10, with the probe's 0.105 s pass (docs/benchmarks.md, "The estimate against measured steps").
MEASURED_PASS_FACTOR = 1.4


@dataclass(frozen=True)
class TrainingEstimate:
    """What a run will cost: parameters, the first stage that runs per step, memory and time."""

    trainable_params: int
    first_trained_stage: int  # encoder stages before it run once per image, not per step
    memory_bytes: int
    seconds_per_step: float
    measured: bool = False  # the decoder's time comes from a pass measured on this machine

    def describe(self, steps: int) -> str:
        """One line for the widget and the CLI: parameters, memory, time per step and in total."""
        total = self.seconds_per_step * steps
        source = " (from this machine's measured decoder pass)" if self.measured else ""
        return (
            f"{self.trainable_params:,} parameters train; about {self.memory_bytes / 1024**3:.1f} GiB, "
            f"{self.seconds_per_step:.2f} s per step{source}, {_duration(total)} for {steps} steps"
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class _Counts:
    total_params: int
    trainable_params: int
    trainable_tensors: int
    stage: int  # first trained encoder stage
    stage_trained: tuple[float, ...]  # per encoder stage: the trained share of its parameters (0..1)
    stage_adapted: tuple[bool, ...]  # per encoder stage: an adapter wraps some of its layers
    decoder_trained: float


def first_trained_stage(spec: PeftSpec, architecture: Architecture) -> int:
    """The first encoder stage ``spec`` adapts (the stage count, ``depth + 2`` for SAM's ViT: the
    encoder stays frozen)."""
    return _meta_counts(spec, architecture).stage


def _meta_counts(spec: PeftSpec, architecture: Architecture) -> _Counts:
    """What ``spec`` trains on ``architecture``, counted on the meta device (no memory; cached)."""
    return _counts(spec.to_json(), architecture)


@lru_cache(maxsize=64)
def _counts(spec_json: str, architecture: Architecture) -> _Counts:
    handle = attached_on_meta(PeftSpec.from_json(spec_json), architecture)
    sam = handle.sam
    base = set(handle.requires_grad_before)  # the parameter names of the plain model
    named = list(sam.named_parameters())

    def inside(prefixes: tuple[str, ...]) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in named if any(n == q or n.startswith(q + ".") for q in prefixes)]

    def share(prefixes: tuple[str, ...]) -> float:
        params = inside(prefixes)
        total = parameter_count(p for n, p in params if n in base) or 1
        return min(1.0, parameter_count(p for _, p in params if p.requires_grad) / total)

    stages = encoder_stages(sam)
    return _Counts(
        total_params=parameter_count(sam.parameters()),
        trainable_params=handle.num_trainable(),
        trainable_tensors=len(handle.trainable_names),
        stage=frozen_prefix_stages(sam),
        stage_trained=tuple(share(s) for s in stages),
        stage_adapted=tuple(any(n not in base for n, _ in inside(s)) for s in stages),
        decoder_trained=share(("mask_decoder",)),
    )


def device_throughput(device: str | torch.device) -> float:
    """The fixed float32 throughput (FLOP/s) the estimate assumes for ``device``; measures nothing.

    CPU: :data:`CPU_FLOPS_PER_THREAD` times the threads torch uses (``torch.get_num_threads()``).
    CUDA: :data:`CUDA_FLOPS_PER_SM` times the device's multiprocessors. MPS: :data:`MPS_FLOPS`.
    """
    target = torch.device(device)
    if target.type == "cuda":
        try:
            properties = torch.cuda.get_device_properties(target.index or 0)
        except (AssertionError, RuntimeError):  # no CUDA here (estimating for another machine)
            return CUDA_FALLBACK_FLOPS
        return CUDA_FLOPS_PER_SM * properties.multi_processor_count
    if target.type == "mps":
        return MPS_FLOPS
    return CPU_FLOPS_PER_THREAD * max(torch.get_num_threads(), 1)


def estimate_training(
    spec: PeftSpec,
    architecture: Architecture,
    device: str = "cpu",
    objects_per_image: int = 8,
    sub_iterations: int = 8,
    flops_per_second: float | None = None,
    decoder_pass_seconds: float | None = None,
) -> TrainingEstimate:
    """Memory and seconds per step of training ``spec`` on ``architecture`` (see the module docstring).

    ``flops_per_second`` overrides :func:`device_throughput` (the per-operation overhead stays that
    of ``device``'s kind). The encoder's per-stage costs come from its encoder family.
    ``decoder_pass_seconds``: one object's decoder pass, forward and backward, as measured on the machine
    that trains (the precision probe's ``decoder_s``); it replaces the decoder's counted cost.
    """
    a = architecture
    counts = _meta_counts(spec, a)
    stage = counts.stage
    cost = family_for(a).encoder_cost(a)
    tokens, dim = a.embedding_size**2, a.prompt_embed_dim
    passes = 2 + sub_iterations  # box start, point start, then one pass per correction
    encoder_flops, activations, ops = 0.0, 0.0, 0.0
    for index in range(stage, len(cost.stages)):  # earlier stages run once per image
        part, trained = cost.stages[index], counts.stage_trained[index]
        if part.kind == "block":
            # backward: input gradients (1x) plus weight gradients of the trained share; attention maps 2x
            encoder_flops += part.flops * (2 + trained) + 3 * part.attention_flops
            activations += part.activation_floats
            ops += OPS_PER_ENCODER_BLOCK + (OPS_PER_ADAPTED_BLOCK if counts.stage_adapted[index] else 0)
        elif part.kind == "neck":
            encoder_flops += part.flops * (2 + trained)
            ops += OPS_PER_NECK
    # Per object and pass: the two-way transformer's image-side projections (two layers and the final
    # attention: 10 N dim^2) and the two transposed convolutions of the upscaling (3 N dim^2).
    decoder_flops = 13 * tokens * dim * dim * objects_per_image * passes * (2 + counts.decoder_trained)
    decoder_ops = passes * OPS_PER_DECODER_PASS * a.decoder_depth / 2
    ops += counts.trainable_tensors * OPS_PER_TRAINABLE_TENSOR
    kind = torch.device(device).type
    rate = flops_per_second or device_throughput(device)
    op_seconds = OP_SECONDS.get(kind, OP_SECONDS["cpu"])
    if decoder_pass_seconds is None:
        decoder_seconds = decoder_flops / DECODER_EFFICIENCY / rate + decoder_ops * op_seconds
    else:
        decoder_seconds = decoder_pass_seconds * objects_per_image * passes * MEASURED_PASS_FACTOR
    seconds = encoder_flops / ENCODER_EFFICIENCY / rate + ops * op_seconds + decoder_seconds
    # Autograd keeps about 160 MB per object and decoder pass on vit_b (measured), scaled by tokens. Each
    # pass is backpropagated before the next (objective.LossSink), so about two passes' graphs are held
    # at once (a distributed run sums the passes first and holds them all: more than this says).
    decoder_activations = objects_per_image * min(passes, 2) * tokens * dim * 40
    total_params, trainable = counts.total_params, counts.trainable_params
    training = _BYTES * (total_params + 3 * trainable + activations + decoder_activations)
    prepare = _BYTES * (total_params + cost.frozen_pass_floats) if stage > 0 else 0
    memory = max(training, prepare)
    return TrainingEstimate(trainable, stage, int(memory), seconds, decoder_pass_seconds is not None)
