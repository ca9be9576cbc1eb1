"""Where a training step's time goes: each part of our loop's step, its FLOPs and the share of the machine's peak.

For each model (LiteMedSAM at 256 px with its real weights, vit_t and vit_b at 1024 px with random
weights) and preset, this runs our training loop (``core.training.loop.train``) as a run does, with
the product's defaults (8 objects per step, 8 correction sub-iterations, the instance decoder trained
jointly, the precision ``auto`` picks), on two generated 512 x 512 cell images, and times each part of
the step by wrapping the functions the step calls (no change to the product's code):

- **encoder fwd / bwd**: the adapted encoder stages (``StageInputs.features``) and their share of the
  backward pass (``LossSink.finish``); nothing for presets that freeze the whole encoder;
- **decoder fwd**: the prompt encoder and mask decoder, 2 start passes (box, point with 3 masks) and
  2 x 8 correction passes (each chain of objects); of which **upscaling** is the mask decoder's
  transposed convolutions (its output upscaling, forward only);
- **decoder bwd**: the backward pass of each decoder pass (backpropagated as soon as it is computed);
- **loss**: Dice + BCE + IoU on the decoder's low-resolution logits (forward);
- **points**: choosing the correction points (numpy, on the CPU);
- **instance fwd / bwd**: micro_sam's instance decoder (UNETR) on the same embeddings, forward and backward;
- **optimizer**: AdamW's step and zero_grad;
- **other**: the rest (sampling prompts and targets, autocast, Python).

Each figure is the mean over ``--steps`` steps after one warm-up step (the run's last step, which also
validates, is not counted). ``GFLOP`` is one step's floating-point operations, forward and backward,
as ``torch.utils.flop_counter.FlopCounterMode`` counts them (matrix products and convolutions); ``% peak``
is GFLOP / step time / the machine's peak, measured here as the best of a few 2048 x 2048 matrix
products in the step's precision.

Usage::

    python benchmarks/step_profile.py                      # every preset on LiteMedSAM and vit_t, four on vit_b
    python benchmarks/step_profile.py --models lite_medsam --presets freeze_encoder,late_lora --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

import napari_sam_peft.core.training.loop as loop_module
import napari_sam_peft.core.training.objective as objective_module
from napari_sam_peft.core.annotation.stage_inputs import StageInputs
from napari_sam_peft.core.peft import PRESETS, spec_from_preset
from napari_sam_peft.core.training.job import TrainingJob
from napari_sam_peft.core.training.loop import TrainingConfig, TrainingHooks, train, training_precisions

# The script's folder is on sys.path when it runs as ``python benchmarks/step_profile.py``.
from peft_methods import machine_description, synchronize
from training_measure import load, training_samples

PARTS = (
    "encoder fwd",
    "encoder bwd",
    "decoder fwd",
    "upscaling",
    "decoder bwd",
    "loss",
    "points",
    "instance fwd",
    "instance bwd",
    "optimizer",
    "other",
)
VIT_B_PRESETS = (
    "freeze_encoder",
    "decoder_lora",
    "late_lora",
    "lora",
)  # a whole-encoder step of vit_b takes minutes
DEFAULTS = TrainingJob(store=".", model="", preset="")  # the product's defaults for a run


class PartTimer:
    """Exclusive wall time per part: a part's clock stops while a part nested in it runs."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stack = ["other"]
        self.totals: dict[str, float] = defaultdict(float)
        self.last = time.perf_counter()
        self.pending_instance = False  # the next backward is the instance decoder's loss

    def _switch(self) -> None:
        synchronize(self.device)
        now = time.perf_counter()
        self.totals[self.stack[-1]] += now - self.last
        self.last = now

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        self._switch()
        self.stack.append(name)
        try:
            yield
        finally:
            self._switch()
            self.stack.pop()

    def wrap(self, name: str | Callable[[], str], function: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.part(name() if callable(name) else name):
                return function(*args, **kwargs)

        return timed

    def reset(self) -> None:
        self._switch()
        self.totals.clear()


@contextmanager
def instrumented(timer: PartTimer, sam: torch.nn.Module) -> Iterator[None]:
    """Wrap the functions a step calls with the timer's parts; undone on exit."""
    patches: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, replacement: Any) -> None:
        patches.append((owner, name, getattr(owner, name)))
        setattr(owner, name, replacement)

    def backward_part() -> str:
        if timer.pending_instance:
            timer.pending_instance = False
            return "instance bwd"
        return "decoder bwd"

    original_objective = objective_module.objective

    def objective(*args: Any, **kwargs: Any) -> Any:
        instance_loss = kwargs.get("instance_loss", args[7] if len(args) > 7 else None)
        if instance_loss is not None:

            def timed_instance(embeddings: torch.Tensor) -> torch.Tensor:
                with timer.part("instance fwd"):
                    loss = instance_loss(embeddings)
                timer.pending_instance = True
                return loss

            if "instance_loss" in kwargs:
                kwargs["instance_loss"] = timed_instance
            else:
                args = (*args[:7], timed_instance, *args[8:])
        return original_objective(*args, **kwargs)

    patch(loop_module, "objective", objective)
    patch(objective_module, "decode", timer.wrap("decoder fwd", objective_module.decode))
    patch(objective_module, "mask_losses", timer.wrap("loss", objective_module.mask_losses))
    patch(objective_module, "correction_points", timer.wrap("points", objective_module.correction_points))
    patch(objective_module.LossSink, "add", timer.wrap(backward_part, objective_module.LossSink.add))
    patch(objective_module.LossSink, "finish", timer.wrap("encoder bwd", objective_module.LossSink.finish))
    patch(StageInputs, "features", timer.wrap("encoder fwd", StageInputs.features))
    patch(torch.optim.AdamW, "step", timer.wrap("optimizer", torch.optim.AdamW.step))
    patch(torch.optim.AdamW, "zero_grad", timer.wrap("optimizer", torch.optim.AdamW.zero_grad))
    upscaling = sam.mask_decoder.output_upscaling
    contexts: list[Any] = []

    def enter(*_: Any) -> None:
        context = timer.part("upscaling")
        context.__enter__()
        contexts.append(context)

    def leave(*_: Any) -> None:
        contexts.pop().__exit__(None, None, None)

    handles = [upscaling.register_forward_pre_hook(enter), upscaling.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for owner, name, original in reversed(patches):
            setattr(owner, name, original)


class _Everywhere:
    """FlopCounterMode's module tracker, reduced to counting everything as "Global": its own tracker's
    backward hooks fail on the decoder passes that are backpropagated one by one."""

    parents = {"Global"}

    def __enter__(self) -> _Everywhere:
        return self

    def __exit__(self, *_: object) -> None:
        return None


def step_flops(model: Any, spec: Any, samples: list, config: TrainingConfig) -> float:
    """One step's FLOPs, forward and backward, as ``torch.utils.flop_counter`` counts them (matrix products,
    attention, convolutions): the second step of a separate three-step run, counted alone."""
    from torch.utils.flop_counter import FlopCounterMode

    calls, counted = [0], [float("nan")]
    original = loop_module._Stepper.step

    def step(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] != 2:
            return original(self, *args, **kwargs)
        counter = FlopCounterMode(display=False)
        counter.mod_tracker = _Everywhere()  # type: ignore[assignment]
        with counter:
            result = original(self, *args, **kwargs)
        counted[0] = float(counter.get_total_flops())
        return result

    short = TrainingConfig(**{**config.__dict__, "steps": 3})
    loop_module._Stepper.step = step  # type: ignore[method-assign]
    try:
        train(model, spec, samples, (), short, TrainingHooks())
    finally:
        loop_module._Stepper.step = original  # type: ignore[method-assign]
    return counted[0]


def peak_flops(device: torch.device, precision: str) -> float:
    """The best FLOP/s of a 2048 x 2048 matrix product in ``precision`` (fp32, bf16 or fp16)."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    b = torch.randn(2048, 2048, device=device, dtype=dtype)
    best = 0.0
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(3):
            a @ b
        synchronize(device)
        best = max(best, 3 * 2 * 2048**3 / (time.perf_counter() - start))
    return best


def profile(model_name: str, preset: str, device: torch.device, steps: int) -> dict[str, Any]:
    """Time each part of ``steps`` steps of ``preset`` on ``model_name`` (after a warm-up step)."""
    model = load(model_name, device, 1024)
    spec = spec_from_preset(preset, model.architecture.depth)
    samples = training_samples()
    config = TrainingConfig(
        steps=steps + 2,
        lr=1e-5,
        objects_per_image=DEFAULTS.objects_per_image,
        sub_iterations=DEFAULTS.sub_iterations,
        validate_every=10**6,
        precision="auto",
        with_decoder=True,
        seed=0,
    )
    precision = training_precisions(model, spec, "auto")[0].name
    timer = PartTimer(device)
    marks: list[float] = []
    kept: dict[str, float] = {}

    def on_event(event: Any) -> None:
        timer._switch()
        marks.append(time.perf_counter())
        if event.step == 1:
            timer.reset()
        elif event.step == steps + 1:
            kept.update(timer.totals)

    with instrumented(timer, model.sam):
        train(model, spec, samples, (), config, TrainingHooks(on_event=on_event))
    step_s = float(np.mean(np.diff(marks)[:steps]))
    parts = {name: kept.get(name, 0.0) / steps for name in PARTS}
    try:
        flops = step_flops(model, spec, samples, config)
    except Exception as error:  # noqa: BLE001 - the times stand without the count
        print(f"{model_name} {preset}: no FLOP count ({type(error).__name__}: {error})", file=sys.stderr)
        flops = float("nan")
    peak = peak_flops(device, precision)
    return {
        "model": model_name,
        "preset": preset,
        "precision": precision,
        "step_s": step_s,
        "parts_s": parts,
        "gflop": flops / 1e9,
        "peak_gflops": peak / 1e9,
        "share_of_peak": flops / step_s / peak,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = "| model | preset | prec. | step s | " + " | ".join(PARTS) + " | GFLOP | % peak |"
    lines = [head, "|" + "---|" * (len(PARTS) + 6)]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | {row['preset']} | | {row['error']} |" + " |" * (len(PARTS) + 2))
            continue
        step = row["step_s"]
        parts = " | ".join(f"{row['parts_s'][p] / step:.0%}" if row["parts_s"][p] else "-" for p in PARTS)
        lines.append(
            f"| {row['model']} | {row['preset']} | {row['precision']} | {step:.2f} | {parts} | "
            f"{row['gflop']:.0f} | {row['share_of_peak']:.0%} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lite_medsam,vit_t,vit_b")
    parser.add_argument("--presets", default="", help="comma-separated (default: all; four on vit_b)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per row (after one warm-up)")
    parser.add_argument("--threads", type=int, default=min(len(os.sched_getaffinity(0)), 16))
    parser.add_argument("--json", default="", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    rows = []
    for model_name in args.models.split(","):
        presets = (
            args.presets.split(",") if args.presets else (VIT_B_PRESETS if model_name == "vit_b" else PRESETS)
        )
        for preset in presets:
            if preset == "qlora":  # 4-bit quantisation needs CUDA
                continue
            try:
                row = profile(model_name, preset, device, args.steps)
            except Exception as error:  # noqa: BLE001 - a row that cannot run is reported, the others go on
                row = {"model": model_name, "preset": preset, "error": f"{type(error).__name__}: {error}"[:80]}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    machine = machine_description(device)
    print(f"{machine['cpu']}, {args.threads} threads, torch {torch.__version__}\n")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": machine, "threads": args.threads, "rows": rows}, out, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
