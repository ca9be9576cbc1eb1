"""Does finetuning help? The demo model on domain B, before and after a few CPU minutes of PEFT.

The bundled demo model was trained on domain A (bright round nuclei) and fails on domain B
(dim elongated cells). Each PEFT method here trains on at most 3 annotated domain-B images
(seeds 0-2, ground-truth labels) and is evaluated with the paper's interactive protocol
(Point, Box, I_P, I_B mSA, 8 correction iterations) on held-out domain-B images (seeds
100-104). Each method runs in its own subprocess, so its peak memory (RSS) is its own.
Training uses ``core.training.train`` as the Finetune widget's worker does (frozen stages
once per image, the paper's objective, AdamW, plateau schedule, early stopping).

Usage::

    python benchmarks/finetune_quality.py                          # the docs table
    python benchmarks/finetune_quality.py --presets late_lora --steps 100 --lr 3e-4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_ROWS = ("freeze_encoder", "decoder_lora", "late_lora", "lora")
TRAIN_SEEDS = (0, 1, 2)
HELD_OUT_SEEDS = (100, 101, 102, 103, 104)
METRICS = ("point", "box", "i_p", "i_b")


def parse_row(row: str) -> tuple[str, str | None]:
    preset, _, blocks = row.partition(":")
    return preset, blocks or None


def measure(row: str, steps: int, lr: float, objects: int, seed: int, threads: int) -> dict:
    import torch
    from segment_anything import SamPredictor

    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.evaluation.interactive import evaluate_interactive
    from napari_sam_peft.core.peft import spec_from_preset
    from napari_sam_peft.core.sam.loading import load_model
    from napari_sam_peft.core.training.loop import TrainingConfig, train

    torch.set_num_threads(threads)
    preset, blocks = parse_row(row)
    model = load_model("demo", device="cpu")
    spec = spec_from_preset(preset, model.architecture.depth, blocks=blocks)
    train_samples = [(s.image, s.labels) for s in (make_sample("cells", seed) for seed in TRAIN_SEEDS)]
    held_out = [(s.image, s.labels) for s in (make_sample("cells", seed) for seed in HELD_OUT_SEEDS)]
    start = time.perf_counter()
    # no separate validation images: at most 3 annotated images exist, all used for training
    config = TrainingConfig(steps=steps, lr=lr, objects_per_image=objects, validate_every=10, seed=seed)
    adapter = train(model, spec, train_samples, (), config)
    train_seconds = time.perf_counter() - start
    handle = adapter.attach_to(model)
    scores = evaluate_interactive(SamPredictor(model.sam), held_out)
    handle.detach()
    return {
        "row": row,
        "scores": scores,
        "train_s": train_seconds,
        "best_step": adapter.metrics["step"],
        "trainable": adapter.num_parameters,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def base_scores() -> dict:
    from segment_anything import SamPredictor

    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.evaluation.interactive import evaluate_interactive
    from napari_sam_peft.core.sam.loading import load_model

    held_out = [(s.image, s.labels) for s in (make_sample("cells", seed) for seed in HELD_OUT_SEEDS)]
    return evaluate_interactive(SamPredictor(load_model("demo", device="cpu").sam), held_out)


def spawn(row: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", row]
    command += ["--steps", str(args.steps), "--lr", repr(args.lr), "--objects", str(args.objects)]
    command += ["--seed", str(args.seed), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"row": row, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def table(base: dict, results: list[dict], steps: int, lr: float) -> str:
    header = "| method | trainable params | train time (s) | peak RSS (GiB) | " + " | ".join(
        f"{m} (change)" for m in ("Point", "Box", "I_P", "I_B")
    )
    lines = [header + " |", "|" + "---|" * 8]
    base_cells = " | ".join(f"{base[m]:.3f}" for m in METRICS)
    lines.append(f"| demo model (no finetuning) | 0 | — | — | {base_cells} |")
    for result in results:
        if "error" in result:
            lines.append(f"| {result['row']} | error: {result['error']} |")
            continue
        s = result["scores"]
        cells = " | ".join(f"{s[m]:.3f} ({s[m] - base[m]:+.3f})" for m in METRICS)
        lines.append(
            f"| {result['row']} | {result['trainable']:,} | {result['train_s']:.0f} | "
            f"{result['peak_rss_gib']:.2f} | {cells} |"
        )
    note = f"{steps} steps at most (early stopping), lr {lr}, held-out seeds {HELD_OUT_SEEDS}."
    return "\n".join(lines) + "\n\n" + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default=",".join(DEFAULT_ROWS), help="comma list; blocks as late_lora:3")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.steps, args.lr, args.objects, args.seed, args.threads)))
        return 0
    base = base_scores()
    results = []
    for row in [r.strip() for r in args.presets.split(",") if r.strip()]:
        start = time.perf_counter()
        results.append(spawn(row, args))
        print(f"[{time.perf_counter() - start:.0f} s] {row}: {results[-1]}", file=sys.stderr)
    print(table(base, results, args.steps, args.lr))
    if args.json:
        payload = {"base": base, "results": results, "args": vars(args)}
        args.json.write_text(json.dumps(payload, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
