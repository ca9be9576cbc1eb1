"""Learning per CPU-minute: held-out Box and I_B after 2, 5 and 10 minutes of training, recipe against recipe.

What a user on a CPU has after a few minutes is the best adapter the run has hot-reloaded so far. So
each recipe trains LiteMedSAM (``freeze_encoder``, the preset of the GPU default run in
docs/finetune_results.md and of the issue's CPU run) for at most
``--minutes`` of wall-clock time from the call that starts training (frozen encoder pass and
starting validation included, model load not), keeps every new best adapter with the time it
arrived, and afterwards (off the clock) evaluates the adapter that was live at each checkpoint
with the paper's interactive protocol (Box, I_B: 8 correction iterations) on held-out images.

Training images: generated seeds 0-2 of the domain; held-out: seeds 100-102 (the GPU default run of
docs/finetune_results.md used the same, so its 200-step paper-recipe scores are the goal). Each
recipe trains in its own subprocess, one after the other (the machine's 2 cores are the clock).

A row is a recipe name (``paper``, ``cpu``: ``core.training.recipe``) with optional overrides,
``cpu[sub=1;objects=16;lr=3e-4;validate=5]``, for choosing a recipe by measurement.

Usage::

    python benchmarks/cpu_minutes.py --domains cells,nuclei --rows cpu,paper --json out.json
    python benchmarks/cpu_minutes.py --domains cells --rows "paper,cpu[sub=1]" --minutes 2.5 --checkpoints 1,2.5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from child_run import measured_in_child, write_rows

TRAIN_SEEDS = (0, 1, 2)
HELD_OUT_SEEDS = (100, 101, 102)
DOMAINS = {"cells": "B", "nuclei": "A"}
CONFIG_FIELDS = ("steps", "lr", "objects_per_image", "sub_iterations", "validate_every")
OVERRIDES = {"sub": "sub_iterations", "objects": "objects_per_image", "lr": "lr", "validate": "validate_every"}


def parse_row(row: str) -> tuple[str, dict[str, float]]:
    """``"cpu[sub=1;lr=3e-4]"`` -> ("cpu", {"sub_iterations": 1, "lr": 3e-4})."""
    name, _, rest = row.partition("[")
    overrides: dict[str, float] = {}
    for item in filter(None, rest.rstrip("]").split(";")):
        key, _, value = item.partition("=")
        overrides[OVERRIDES[key.strip()]] = float(value)
    return name.strip(), overrides


def samples(domain: str, seeds: tuple[int, ...]) -> list:
    from napari_sam_peft.core.data.sample_data import make_sample

    return [(s.image, s.labels) for s in (make_sample(domain, seed) for seed in seeds)]


def train_row(row: str, domain: str, minutes: float, folder: Path, threads: int) -> dict:
    """Train one row until ``minutes`` pass; every new best adapter is saved with the seconds it took."""
    import torch

    from napari_sam_peft.core.peft import spec_from_preset
    from napari_sam_peft.core.sam.loading import load_model
    from napari_sam_peft.core.sam.precision_probe import measured_decoder_pass
    from napari_sam_peft.core.training.estimate import estimate_training
    from napari_sam_peft.core.training.holdout import object_ids
    from napari_sam_peft.core.training.loop import TrainingConfig, TrainingHooks, train, training_precisions
    from napari_sam_peft.core.training.plan import schedule_for
    from napari_sam_peft.core.training.recipe import recipe_named

    torch.set_num_threads(threads)
    name, overrides = parse_row(row)
    model = load_model("lite_medsam", device="cpu")
    spec = spec_from_preset("freeze_encoder", model.architecture.depth)
    recipe = recipe_named(name)
    train_samples = samples(domain, TRAIN_SEEDS)
    objects = sum(len(object_ids(labels)) for _, labels in train_samples)
    schedule = schedule_for(spec.method, model.architecture, objects, recipe)
    config = TrainingConfig(
        steps=schedule.steps,
        lr=float(overrides.get("lr", schedule.lr)),
        objects_per_image=int(overrides.get("objects_per_image", recipe.objects_per_image)),
        sub_iterations=int(overrides.get("sub_iterations", recipe.sub_iterations)),
        validate_every=int(overrides.get("validate_every", recipe.validate_every)),
        seed=0,
    )
    arrivals: list[dict] = []
    steps: list[tuple[int, float]] = []
    precision = training_precisions(model, spec, "auto")[0].name
    estimate = estimate_training(
        spec,
        model.architecture,
        "cpu",
        config.objects_per_image,
        config.sub_iterations,
        decoder_pass_seconds=measured_decoder_pass(model.sam, precision),
    )
    start = time.perf_counter()

    def on_best(adapter) -> None:
        path = folder / f"best{len(arrivals)}.safetensors"
        adapter.save(path)
        arrivals.append(
            {"seconds": time.perf_counter() - start, "step": adapter.metrics["step"], "path": str(path)}
        )

    hooks = TrainingHooks(
        on_best=on_best,
        on_event=lambda event: steps.append((event.step, time.perf_counter() - start)),
        should_stop=lambda: time.perf_counter() - start > minutes * 60,
    )
    train(model, spec, train_samples, (), config, hooks)
    seconds = time.perf_counter() - start
    return {
        "row": row,
        "domain": domain,
        "config": {
            k: getattr(config, k) for k in ("steps", "lr", "objects_per_image", "sub_iterations", "validate_every")
        },
        "train_objects": objects,
        "steps_done": steps[-1][0] if steps else 0,
        "seconds": seconds,
        # from the first step's end to the last's: validations included, the frozen encoder pass not
        "seconds_per_step": (steps[-1][1] - steps[0][1]) / max(len(steps) - 1, 1),
        "first_step_s": steps[0][1] if steps else None,
        "precision": precision,
        "estimated_seconds_per_step": estimate.seconds_per_step,
        "arrivals": arrivals,
    }


def evaluate_rows(results: list[dict], checkpoints: list[float], threads: int) -> None:
    """Score the adapter live at each checkpoint (and the base model) on the held-out images, in place."""
    import torch
    from segment_anything import SamPredictor

    from napari_sam_peft.core.evaluation.interactive import evaluate_interactive
    from napari_sam_peft.core.peft import Adapter
    from napari_sam_peft.core.sam.loading import load_model

    torch.set_num_threads(threads)
    model = load_model("lite_medsam", device="cpu")
    scored: dict[str, dict] = {}

    def score(path: str | None, domain: str) -> dict:
        key = f"{path}|{domain}"
        if key not in scored:
            held_out = samples(domain, HELD_OUT_SEEDS)
            handle = Adapter.load(path).attach_to(model) if path is not None else None
            try:
                scored[key] = evaluate_interactive(SamPredictor(model.sam), held_out)
            finally:
                if handle is not None:
                    handle.detach()
        return scored[key]

    for result in results:
        result["base"] = score(None, result["domain"])
        result["at"] = {}
        for minutes in checkpoints:
            live = [a for a in result["arrivals"] if a["seconds"] <= minutes * 60]
            step = live[-1]["step"] if live else None
            result["at"][str(minutes)] = {
                "step": step,
                "scores": score(live[-1]["path"], result["domain"]) if live else result["base"],
            }


def table(results: list[dict], checkpoints: list[float]) -> str:
    head = "| domain | recipe | s/step (estimated) | first adapter | " + " | ".join(
        f"{m:g} min: step, Box, I_B" for m in checkpoints
    )
    lines = [head + " |", "|" + "---|" * (4 + len(checkpoints))]
    for r in results:
        base = r["base"]
        lines.append(
            f"| {DOMAINS[r['domain']]} ({r['domain']}) | base model | — | — | "
            + " | ".join(f"—, {base['box']:.3f}, {base['i_b']:.3f}" for _ in checkpoints)
            + " |"
        )
        cells = []
        for m in checkpoints:
            at = r["at"][str(m)]
            s = at["scores"]
            cells.append(f"{at['step'] or '—'}, {s['box']:.3f}, {s['i_b']:.3f}")
        c = r["config"]
        recipe = (
            f"{r['row']} ({c['objects_per_image']} objects, {c['sub_iterations']} corrections, lr {c['lr']:g}, "
            f"validation every {c['validate_every']})"
        )
        first = f"{r['arrivals'][0]['seconds']:.0f} s" if r["arrivals"] else "—"
        timing = f"{r['seconds_per_step']:.2f} ({r['estimated_seconds_per_step']:.2f})"
        lines.append(f"| | {recipe} | {timing} | {first} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="cpu,paper", help="comma list of recipe[overrides]")
    parser.add_argument("--domains", default="cells,nuclei")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time of each row")
    parser.add_argument("--checkpoints", default="2,5,10", help="minutes at which the live adapter is scored")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--worker", nargs=3, metavar=("ROW", "DOMAIN", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        row, domain, folder = args.worker
        print(json.dumps(train_row(row, domain, args.minutes, Path(folder), args.threads)))
        return 0
    checkpoints = [float(m) for m in args.checkpoints.split(",")]
    rows = [r for r in args.rows.split(",") if r]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for domain in args.domains.split(","):
            for index, row in enumerate(rows):
                folder = Path(tmp) / f"{domain}{index}"
                folder.mkdir()
                command = [sys.executable, __file__, "--worker", row, domain, str(folder)]
                command += ["--minutes", str(args.minutes), "--threads", str(args.threads)]
                results.append(measured_in_child(command, f"Training {row} on {domain}"))
                print(f"trained {row} on {domain}: {results[-1]['steps_done']} steps", file=sys.stderr, flush=True)
        evaluate_rows(results, checkpoints, args.threads)
    print(table(results, checkpoints))
    write_rows(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
