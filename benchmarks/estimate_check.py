"""The pre-run estimate next to measured training steps: ``estimate | measured | ratio`` per preset.

For the bundled demo model (``load_model("demo")``), each preset trains for a few steps with
``core.training.train`` on generated cell images (256 x 256, 8 objects per step, 8 correction
sub-iterations), each in its own subprocess; the measured step time is the mean (and the min) of
the steps after the first (the first step also pays for warm-up). Next to it stands
``core.estimate.estimate_training`` for the same preset, device and thread count, and their ratio
(estimate / measured: 1 is exact, the aim is 0.5 to 2).

``--vit-b`` adds SAM vit_b rows (random weights from ``build_sam(VIT_B)``, 1024 px, two
512 x 512 cell images, 5 objects per step as in ``benchmarks/training.py``): each step takes 10 to
25 s on a 2-core CPU, so those rows take minutes.

Measure on an otherwise idle machine (``uptime``): the decoder's many small operations slow down
many times over when another process holds one of torch's cores. The script prints the load
average before and after.

Usage::

    python benchmarks/estimate_check.py                       # demo model, late_lora / freeze_encoder / lora
    python benchmarks/estimate_check.py --presets late_lora --steps 12
    python benchmarks/estimate_check.py --vit-b --vit-b-steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from child_run import measured_in_child

DEMO_PRESETS = ("late_lora", "freeze_encoder", "lora", "late_ft")
VIT_B_ROWS = ("freeze_encoder", "late_ft:11", "late_lora:6-11")


def _split_row(row: str) -> tuple[str, str | None]:
    preset, _, blocks = row.partition(":")
    return preset, blocks or None


def measure(model: str, row: str, steps: int, objects: int, threads: int, device: str) -> dict:
    """Train ``row`` for ``steps + 1`` steps in this process; the step times after the first."""
    import numpy as np
    import torch

    from napari_sam_peft.core.data.sample_data import make_series
    from napari_sam_peft.core.peft import spec_from_preset
    from napari_sam_peft.core.training.loop import TrainingConfig, TrainingHooks, train

    torch.set_num_threads(threads)
    preset, blocks = _split_row(row)
    if model == "demo":
        from napari_sam_peft.core.sam.loading import load_model

        loaded = load_model("demo", device=device)
        samples = make_series("cells", 3)
    else:
        from napari_sam_peft.core.sam.architecture import VIT_B, build_sam
        from napari_sam_peft.core.sam.loading import LoadedModel, model_identity

        torch.manual_seed(0)
        sam = build_sam(VIT_B, device=device)
        loaded = LoadedModel(sam, model_identity(sam, "vit_b_random"), VIT_B, "random weights")
        samples = make_series("cells", 2, shape=(512, 512))
    pairs = [(s.image, s.labels) for s in samples]
    spec = spec_from_preset(preset, len(loaded.sam.image_encoder.blocks), blocks=blocks)
    stamps: list[float] = []
    cpu: list[float] = []

    def on_event(event) -> None:
        stamps.append(time.perf_counter())
        cpu.append(time.process_time())

    start = time.perf_counter()
    # One more step than timed at the end: train validates at its last step.
    config = TrainingConfig(steps=steps + 2, objects_per_image=objects, validate_every=10**6, patience=10**6)
    train(loaded, spec, pairs[:-1], pairs[-1:], config, TrainingHooks(on_event=on_event))
    times = list(np.diff(stamps[: steps + 1]))  # steps 2..steps+1: after the warm-up step, before the last
    cpu_times = list(np.diff(cpu[: steps + 1]))
    return {
        "cpu_mean_s": float(np.mean(cpu_times)),  # the process's CPU time: with 1 thread, robust to load
        "row": row,
        "first_step_s": stamps[0] - start,
        "mean_s": float(np.mean(times)),
        "min_s": float(np.min(times)),
        "steps": times,
        "load": os.getloadavg()[0],
    }


def estimate(model: str, row: str, objects: int, threads: int, device: str) -> float:
    import torch

    from napari_sam_peft.core.peft import spec_from_preset
    from napari_sam_peft.core.sam.architecture import DEMO, VIT_B
    from napari_sam_peft.core.training.estimate import estimate_training

    architecture = DEMO if model == "demo" else VIT_B
    preset, blocks = _split_row(row)
    spec = spec_from_preset(preset, architecture.depth, blocks=blocks)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return estimate_training(spec, architecture, device, objects_per_image=objects).seconds_per_step
    finally:
        torch.set_num_threads(previous)


def _measure_in_subprocess(model: str, row: str, args: argparse.Namespace, steps: int, objects: int) -> dict:
    command = [
        sys.executable,
        __file__,
        "--measure-one",
        json.dumps({"model": model, "row": row, "steps": steps, "objects": objects}),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    return measured_in_child(command, f"Measuring {row} on {model}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets", nargs="+", default=list(DEMO_PRESETS), help="demo-model rows (preset[:blocks])"
    )
    parser.add_argument("--steps", type=int, default=8, help="timed demo-model steps per preset (default 8)")
    parser.add_argument("--objects", type=int, default=8, help="objects per step for the demo model (default 8)")
    parser.add_argument("--vit-b", action="store_true", help="also the vit_b rows (minutes)")
    parser.add_argument("--vit-b-steps", type=int, default=2, help="timed vit_b steps per row (default 2)")
    parser.add_argument("--vit-b-objects", type=int, default=5, help="objects per vit_b step (default 5)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--measure-one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_one is not None:
        job = json.loads(args.measure_one)
        print(
            json.dumps(measure(job["model"], job["row"], job["steps"], job["objects"], args.threads, args.device))
        )
        return
    print(f"load average before: {os.getloadavg()}; {args.threads} threads on {args.device}")
    rows = [("demo", row, args.steps, args.objects) for row in args.presets]
    if args.vit_b:
        rows += [("vit_b", row, args.vit_b_steps, args.vit_b_objects) for row in VIT_B_ROWS]
    print("| model | preset | objects | estimated s/step | measured s/step (mean, min) | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for model, row, steps, objects in rows:
        measured = _measure_in_subprocess(model, row, args, steps, objects)
        guess = estimate(model, row, objects, args.threads, args.device)
        print(
            f"| {model} | {row} | {objects} | {guess:.3f} | {measured['mean_s']:.3f} ({measured['min_s']:.3f}) "
            f"| {guess / measured['mean_s']:.2f} |",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
