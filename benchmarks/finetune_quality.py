"""Does finetuning help? A model on a generated domain, before and after a few CPU minutes of PEFT.

The bundled demo model was trained on domain A (``nuclei``: bright round nuclei) and fails on
domain B (``cells``: dim elongated cells); ``--model lite_medsam`` measures LiteMedSAM's real
pretrained weights instead, on either domain. Each PEFT method here trains on at most 3
annotated images of the domain (seeds 0-2, ground-truth labels) and is evaluated with the
paper's interactive protocol (Point, Box, I_P, I_B mSA, 8 correction iterations) on held-out
images of the same domain (seeds 100-104). Each method runs in its own subprocess, so its peak
memory (RSS) is its own. Training uses ``core.training.train`` as the Finetune widget's worker
does (frozen stages once per image, the paper's objective, AdamW, plateau schedule, early
stopping).

A row is ``preset[:blocks][@lr]``: ``late_lora:3`` adapts block 3 only, ``late_ft@1e-5`` trains
that row at its own learning rate (full finetuning usually wants a lower one than LoRA).

Usage::

    python benchmarks/finetune_quality.py --lr 3e-4                # the docs' demo-model table
    python benchmarks/finetune_quality.py --presets late_lora --steps 100   # the recommended lr
    python benchmarks/finetune_quality.py --model lite_medsam --domain cells --steps 40 --objects 4 \\
        --sub-iterations 4 --held-out 2 --presets freeze_encoder,decoder_lora,late_lora,lora,late_ft
    python benchmarks/finetune_quality.py ... --precision bf16-emulated   # bfloat16's numbers on any CPU
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
MODELS = ("demo", "lite_medsam")
DOMAINS = {"cells": "domain B", "nuclei": "domain A"}
TRAIN_SEEDS = (0, 1, 2)
HELD_OUT_SEEDS = (100, 101, 102, 103, 104)
METRICS = ("point", "box", "i_p", "i_b")


def parse_row(row: str) -> tuple[str, str | None, float | None]:
    """``"late_ft:5-9@1e-5"`` -> (preset, blocks or None, lr or None)."""
    head, _, lr = row.partition("@")
    preset, _, blocks = head.partition(":")
    return preset.strip(), blocks.strip() or None, float(lr) if lr.strip() else None


def samples(domain: str, seeds: tuple[int, ...]) -> list:
    from napari_sam_peft.core.data.sample_data import make_sample

    return [(s.image, s.labels) for s in (make_sample(domain, seed) for seed in seeds)]


def measure(row: str, args: argparse.Namespace) -> dict:
    import torch
    from segment_anything import SamPredictor

    from napari_sam_peft.core.evaluation.interactive import evaluate_interactive
    from napari_sam_peft.core.peft import spec_from_preset
    from napari_sam_peft.core.peft.blocks import format_blocks
    from napari_sam_peft.core.peft.recommend import recommended_lr, recommended_steps
    from napari_sam_peft.core.sam.loading import load_model
    from napari_sam_peft.core.training.holdout import object_ids
    from napari_sam_peft.core.training.loop import TrainingConfig, train

    torch.set_num_threads(args.threads)
    precision = args.precision
    if precision == "bf16-emulated":  # numerics only: the numbers of native bfloat16, about twice float32's time
        torch.cpu._is_avx512_bf16_supported = lambda: True
        precision = "bf16"
    preset, blocks, row_lr = parse_row(row)
    model = load_model(args.model, device=args.device)
    lr = row_lr if row_lr is not None else args.lr
    depth = model.architecture.depth
    spec = spec_from_preset(preset, depth, blocks=blocks)
    if lr is None:  # what a run without --lr takes
        lr = recommended_lr(spec.method, model.architecture)
    train_samples = samples(args.domain, TRAIN_SEEDS)
    held_out = samples(args.domain, HELD_OUT_SEEDS[: args.held_out])
    train_objects = sum(len(object_ids(labels)) for _, labels in train_samples)
    steps = args.steps or recommended_steps(train_objects, args.objects)  # what a run without --steps takes
    start = time.perf_counter()
    # no separate validation images: at most 3 annotated images exist, all used for training
    config = TrainingConfig(
        steps=steps,
        lr=lr,
        objects_per_image=args.objects,
        sub_iterations=args.sub_iterations,
        validate_every=10,
        seed=args.seed,
        precision=precision,
    )
    adapter = train(model, spec, train_samples, (), config)
    train_seconds = time.perf_counter() - start
    handle = adapter.attach_to(model)
    start = time.perf_counter()
    scores = evaluate_interactive(SamPredictor(model.sam), held_out)
    eval_seconds = time.perf_counter() - start
    handle.detach()
    return {
        "row": row,
        "preset": preset,
        "blocks": format_blocks(spec.blocks, depth) if spec.blocks else "decoder",
        "depth": depth,
        "lr": lr,
        "steps": steps,
        "train_objects": train_objects,
        "device": str(model.device),
        "precision": args.precision,
        "scores": scores,
        "train_s": train_seconds,
        "eval_s": eval_seconds,
        "best_step": adapter.metrics["step"],
        "best_val_box_iou": adapter.metrics["val_box_iou"],
        "trainable": adapter.num_parameters,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if model.device.type == "cuda" else None,
    }


def base_scores(model_name: str, domain: str, threads: int, held_out_images: int, device: str) -> dict:
    import torch
    from segment_anything import SamPredictor

    from napari_sam_peft.core.evaluation.interactive import evaluate_interactive
    from napari_sam_peft.core.sam.loading import load_model

    torch.set_num_threads(threads)
    held_out = samples(domain, HELD_OUT_SEEDS[:held_out_images])
    return evaluate_interactive(SamPredictor(load_model(model_name, device=device).sam), held_out)


def spawn(row: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", row]
    command += ["--model", args.model, "--domain", args.domain]
    command += ["--objects", str(args.objects), "--held-out", str(args.held_out), "--device", args.device]
    command += [] if args.steps is None else ["--steps", str(args.steps)]
    command += [] if args.lr is None else ["--lr", repr(args.lr)]
    command += ["--sub-iterations", str(args.sub_iterations)]
    command += ["--seed", str(args.seed), "--threads", str(args.threads), "--precision", args.precision]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"row": row, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def method_cell(result: dict) -> str:
    """The row as asked, and which encoder blocks it adapted where that is not the decoder only."""
    blocks, depth = result.get("blocks", "decoder"), result.get("depth")
    if blocks == "decoder" or depth is None:
        return result["row"]
    where = f"all {depth} blocks" if blocks == "all" else f"blocks {blocks} of {depth}"
    return f"{result['row']} ({where})"


def caption(args: argparse.Namespace) -> str:
    lr = args.lr if args.lr is not None else "recommended per row (napari-sam-peft's default)"
    steps = args.steps or "the recommended number of"
    return (
        f"model {args.model}, domain {args.domain} ({DOMAINS[args.domain]}): {steps} steps at most "
        f"(early stopping), lr {lr} (unless the row says @lr), {args.objects} objects per step, "
        f"{args.sub_iterations} correction sub-iterations, train seeds {TRAIN_SEEDS}, held-out seeds "
        f"{HELD_OUT_SEEDS[: args.held_out]}."
    )


def table(base: dict, results: list[dict], args: argparse.Namespace) -> str:
    header = "| method | trainable params | train time (s) | peak RSS (GiB) | " + " | ".join(
        f"{m} (change)" for m in ("Point", "Box", "I_P", "I_B")
    )
    lines = [header + " |", "|" + "---|" * 8]
    base_cells = " | ".join(f"{base[m]:.3f}" for m in METRICS)
    lines.append(f"| {args.model} model (no finetuning) | 0 | — | — | {base_cells} |")
    for result in results:
        if "error" in result:
            lines.append(f"| {result['row']} | error: {result['error']} |")
            continue
        s = result["scores"]
        cells = " | ".join(f"{s[m]:.3f} ({s[m] - base[m]:+.3f})" for m in METRICS)
        memory = f"{result['peak_rss_gib']:.2f}"
        if result.get("peak_gpu_gib") is not None:
            memory += f" (GPU {result['peak_gpu_gib']:.2f})"
        lines.append(
            f"| {method_cell(result)}, lr {result['lr']:g}, {result.get('steps', args.steps)} steps, "
            f"{result.get('precision', 'fp32')} | "
            f"{result['trainable']:,} | {result['train_s']:.0f} | {memory} | {cells} |"
        )
    return "\n".join(lines) + "\n\n" + caption(args)


def save(path: Path | None, base: dict, results: list[dict], args: argparse.Namespace) -> None:
    if path is not None:
        payload = {"base": base, "results": results, "args": vars(args)}
        path.write_text(json.dumps(payload, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets", default=",".join(DEFAULT_ROWS), help="comma list of preset[:blocks][@lr], e.g. late_ft@1e-5"
    )
    parser.add_argument("--model", choices=MODELS, default="demo")
    parser.add_argument("--domain", choices=tuple(DOMAINS), default="cells", help="cells: domain B, nuclei: A")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps (default: the recommended count for the data)"
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="learning rate of every row (default: the recommended one per row)"
    )
    parser.add_argument(
        "--held-out", type=int, default=len(HELD_OUT_SEEDS), help="held-out images to evaluate on (at most 5)"
    )
    parser.add_argument("--objects", type=int, default=8, help="objects per training step")
    parser.add_argument("--sub-iterations", type=int, default=8, help="correction sub-iterations per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps (timings are the device's)")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16", "bf16-emulated"),
        default="auto",
        help="training precision (bf16-emulated: bfloat16 on a CPU without it, for its numbers, not its speed)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args)))
        return 0
    rows = [r.strip() for r in args.presets.split(",") if r.strip()]
    for row in rows:
        try:
            parse_row(row)
        except ValueError:
            parser.error(f"row {row!r}: the learning rate after @ is not a number")
    start = time.perf_counter()
    base = base_scores(args.model, args.domain, args.threads, args.held_out, args.device)
    print(f"[{time.perf_counter() - start:.0f} s] base {args.model} on {args.domain}: {base}", file=sys.stderr)
    results = []
    for row in rows:
        start = time.perf_counter()
        results.append(spawn(row, args))
        results[-1]["wall_s"] = time.perf_counter() - start
        print(f"[{results[-1]['wall_s']:.0f} s] {row}: {results[-1]}", file=sys.stderr)
        save(args.json, base, results, args)  # after every row: a run stopped early keeps what it measured
    save(args.json, base, results, args)
    print(table(base, results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
