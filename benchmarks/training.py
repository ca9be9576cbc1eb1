"""Training step and adapter reload: ours next to micro_sam's, each as its users run it and in float32.

Part 1, **training**: for each model (vit_b at 1024 px and vit_t at 1024 px with random weights,
LiteMedSAM at 256 px with its real ones) and each row (``freeze_encoder``, ``late_ft`` on the last
block, ``late_lora`` on the late blocks), one step of each project's real training code on the same
images, in four variants measured in one run:

- **ours, auto**: our loop in the precision its probe measured fastest (``core.sam.precision_probe``:
  bfloat16 or float16 autocast only where the hardware computes it natively *and* it was faster than
  float32 on this model), as our users get it. Where the hardware has no reduced precision, auto is
  the float32 run, not measured twice. The column "ours auto / ours fp32" flags (**SLOWER**) every
  row where auto stepped more than 5% slower than float32, and the run lists them at the end.
- **ours, fp32**: our loop in float32.
- **micro_sam, amp**: micro_sam's ``SamTrainer`` with the autocast ``train_sam`` uses by default
  (bfloat16 on the CPU, emulated where the CPU lacks it; float16 with a gradient scaler on CUDA).
- **micro_sam, fp32**: the same trainer in float32.

``training_measure.py`` says exactly what each side runs. The two objectives differ in detail:
micro_sam runs the whole image encoder at every step, starts each step from points *or* boxes
(alternating, so keep ``--steps`` even) and makes 8 decoder passes, with losses at the image's own
size; ours starts from both and makes 10, with losses at the mask decoder's resolution.

Peak memory is the peak RSS of the worker process on the CPU (``ru_maxrss``) and
``torch.cuda.max_memory_allocated`` on CUDA. Next to our measured numbers stands our own estimate
(``core.training.estimate``), the one the Finetune widget shows before a run.

Part 2, **reload** (vit_b only): after training a new adapter, how long until the user sees a mask
from it on the current image; see ``reload_measure.py``.

Every measurement runs in its own subprocess, so each peak memory figure is its own, and each has a
time limit (``--row-timeout``): a row that runs out is reported as "timed out" and the others go on.
Nothing is downloaded. On the CPU, give ``--threads`` no more than the idle cores: when another process holds
one of torch's cores, the many small operations of the mask decoder slow down many times over.

Usage::

    python benchmarks/training.py                       # the docs tables (about 40 minutes on 2 cores)
    python benchmarks/training.py --quick               # a reduced run (see --help): under 10 minutes,
                                                        # each measurement capped at 28 s
    python benchmarks/training.py --device cuda --only training --json training.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from napari_sam_peft.core.sam.precision import supported_precisions

# The script's folder is on sys.path when it runs as ``python benchmarks/training.py``.
from peft_methods import Unavailable, machine_description, resolve_device
from reload_measure import RELOAD_ROWS, measure_reload
from training_measure import LR, MODELS, OBJECTS_PER_IMAGE, SUB_ITERATIONS, load, measure_micro_sam, measure_ours
from training_report import reload_table, slower_rows, training_table

ROWS = {
    "vit_b": ("freeze_encoder", "late_ft:11", "late_lora:6-11"),
    "vit_t": ("freeze_encoder", "late_ft:last 1", "late_lora"),
    "lite_medsam": ("freeze_encoder", "late_ft:last 1", "late_lora"),
}
QUICK_ROWS = {"vit_b": ROWS["vit_b"], "vit_t": ("freeze_encoder",), "lite_medsam": ("freeze_encoder",)}
VARIANTS = (("ours", "auto"), ("ours", "fp32"), ("micro_sam", "amp"), ("micro_sam", "fp32"))
QUICK_IMAGE_SIZE = 256


# ---------------------------------------------------------------- workers
def run_worker(kind: str, model_name: str, row: str, precision: str, args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    try:
        if kind == "ours":
            result = measure_ours(load(model_name, device, args.image_size), row, device, args.steps, precision)
        elif kind == "micro_sam":
            result = measure_micro_sam(model_name, row, device, args.steps, precision == "amp", args.image_size)
        else:
            result = measure_reload(row, args.image_size, device)
    except Unavailable as err:
        result = {"status": "n/a", "reason": str(err)}
    names = {"kind": kind, "model": model_name, "row": f"{model_name} {row}", "variant": precision}
    print(json.dumps({**names, **result}))
    return 0


def spawn_worker(kind: str, model_name: str, row: str, precision: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        model_name,
        row,
        precision,
        "--device",
        args.device,
        "--image-size",
        str(args.image_size),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
    ]
    start = time.perf_counter()
    names = {"kind": kind, "model": model_name, "row": f"{model_name} {row}", "variant": precision}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.row_timeout)
    except subprocess.TimeoutExpired:
        done = None
    lines = done.stdout.strip().splitlines() if done is not None else []
    if done is None:
        result = {**names, "status": "timed out", "reason": f"over {args.row_timeout:.0f} s (--row-timeout)"}
    elif done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        result = {**names, "status": "error", "reason": last}
    else:
        result = json.loads(lines[-1])
    elapsed, load_avg = time.perf_counter() - start, os.getloadavg()[0]
    print(
        f"[{elapsed:6.1f} s, load {load_avg:.1f}] {kind:9} {precision:4} {model_name} {row}: {result['status']}",
        file=sys.stderr,
        flush=True,
    )
    return result


def measure_training(models: list[str], args: argparse.Namespace) -> list[dict]:
    """Every (model, row, variant); ours in auto is the float32 run where the device offers nothing else."""
    only_fp32 = supported_precisions(resolve_device(args.device)) == ["fp32"]
    records = []
    rows = QUICK_ROWS if args.quick else ROWS
    for model_name in models:
        for row in rows[model_name]:
            fp32 = None
            for kind, variant in VARIANTS:
                if kind == "ours" and variant == "auto" and only_fp32:
                    continue  # measured as fp32 below
                record = spawn_worker(kind, model_name, row, variant, args)
                records.append(record)
                if kind == "ours" and variant == "fp32":
                    fp32 = record
            if only_fp32 and fp32 is not None:
                records.insert(len(records) - 3, {**fp32, "variant": "auto", "same_as": "fp32"})
    return records


# ---------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--image-size", type=int, default=1024, help="vit_b's input size, a multiple of 16")
    parser.add_argument(
        "--steps",
        type=int,
        default=2,
        help="timed steps after one warm-up step (default 2; even, as micro_sam alternates point and box)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (default 2)")
    parser.add_argument("--only", choices=("training", "reload", "all"), default="all")
    parser.add_argument(
        "--row-timeout",
        type=float,
        default=900.0,
        help="seconds one measurement may take before it is reported as 'timed out' (default 900; --quick: 28)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"vit_b at {QUICK_IMAGE_SIZE} px, TinyViT on freeze_encoder only, 1 timed step, no reload part",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "MODEL", "ROW", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.image_size, args.steps, args.only = QUICK_IMAGE_SIZE, 1, "training"
        args.row_timeout = min(args.row_timeout, 28.0)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    unknown = [name for name in args.models.split(",") if name not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(MODELS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(*args.worker, args)
    device = resolve_device(args.device)
    training = measure_training(args.models.split(","), args) if args.only in ("training", "all") else []
    reload_rows = RELOAD_ROWS if args.only in ("reload", "all") else ()
    reload = [spawn_worker("reload", "vit_b", row, "auto", args) for row in reload_rows]
    machine = machine_description(device)
    threads = f", {args.threads} torch thread(s)" if device.type == "cpu" else ""
    print(f"Machine: {machine}{threads}; ours in auto: the precision probe's choice per model (see the headers)")
    if training:
        print(
            f"\nTraining: vit_b at {args.image_size} px, vit_t at 1024 px (random weights), LiteMedSAM at 256 px; "
            f"'cells' sample images 512x512, {OBJECTS_PER_IMAGE} objects per image, {SUB_ITERATIONS} "
            f"sub-iterations, AdamW lr {LR:g}; mean of {args.steps} timed step(s) after 1 warm-up step.\n"
        )
        print(training_table(training, device))
    if reload:
        print("\nAdapter reload (vit_b): time to the first mask from a new adapter on an image already embedded\n")
        print(reload_table(reload))
    for row in slower_rows(training):
        print(f"- {row}: ours in auto stepped slower than ours in fp32")
    for record in [*training, *reload]:
        if record["status"] != "ok":
            what = f"{record['kind']} {record['variant']} {record['row']}"
            print(f"- {what}: {record['status']}: {record['reason']}")
    if args.json:
        payload = {"machine": machine, "image_size": args.image_size, "steps": args.steps, "results": training}
        args.json.write_text(json.dumps({**payload, "reload": reload}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
