"""Round two continued from round one's adapter against round two from the base model, in one run.

The headless demo's two rounds, on the true labels (so both round-two runs see exactly the same
store): round one trains on the demo's three training images; three more images are annotated;
round two then trains the same number of steps twice, with the same seed: from the base model (what
every run did before warm starts) and continued from round one's adapter (``--from-adapter``: its
tensors and instance decoder, round two's images drawn half the time, half the recommended rate).
Validation is three fixed images in the store's validation split, so the scores of all three runs are
comparable (one image put LiteMedSAM's validation at its ceiling, where runs tie on noise).

    python benchmarks/warm_start.py [--models demo,lite_medsam] [--steps 24] [--validate-every 2]

Columns: the best validation score (box IoU) and the step it came at; the steps and seconds until
validation reached round one's best and the from-scratch run's best (each run's clock starts at its
``started`` event); held-out Box and I_B mSA (2 generated images, 4 correction iterations) and AIS;
Box mSA on round one's images (what the continuation must not forget).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from segment_anything import SamPredictor

from napari_sam_peft.cli.demo_session import HELD_OUT_SEEDS, ROUND_TWO_SEEDS, TRAIN_SEEDS, DemoSettings, demo_job
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.evaluation.automatic import evaluate_automatic
from napari_sam_peft.core.evaluation.interactive import evaluate_interactive
from napari_sam_peft.core.instance import build_decoder
from napari_sam_peft.core.peft import Adapter
from napari_sam_peft.core.peft.recommend import recommend_preset
from napari_sam_peft.core.sam.loading import load_model
from napari_sam_peft.core.training.events import Event, Progress, Started
from napari_sam_peft.core.training.run import run_job

VALIDATION_SEEDS = (50, 51, 52)


def add_images(store: AnnotationStore, seeds, split: str = "train") -> None:
    for seed in seeds:
        sample = make_sample("cells", seed=seed)
        store.add_labels(sample.image, sample.labels, split=split)


def train(settings: DemoSettings, store: Path, preset, blocks, out: Path, parent: Path | None = None) -> dict:
    """One run; its validation curve as (step, seconds since ``started``, score)."""
    curve: list[tuple[int, float, float]] = []
    started = [0.0]

    def record(event: Event) -> None:
        if isinstance(event, Started):
            started[0] = time.perf_counter()
        elif isinstance(event, Progress) and event.val_score is not None:
            curve.append((event.step, time.perf_counter() - started[0], event.val_score))

    job = replace(demo_job(settings, store, preset, blocks, out), from_adapter=parent)
    record_ = run_job(job, record)
    return {
        "curve": curve,
        "best": record_.best_score,
        "best_step": record_.best_step,
        "lr": record_.lr,
        "out": out,
    }


def reached(curve, target: float) -> str:
    """The first step (and seconds) at which validation reached ``target``."""
    for step, seconds, score in curve:
        if score >= target - 1e-9:
            return f"{step} ({seconds:.0f} s)"
    return "not reached"


def scores(model, adapter_path: Path | None, held_out, round_one) -> dict[str, float]:
    handle = None
    decoder = None
    if adapter_path is not None:
        adapter = Adapter.load(adapter_path)
        handle = adapter.attach_to(model)
        decoder = build_decoder(model.sam, adapter.decoder) if adapter.has_decoder else None
    try:
        predictor = SamPredictor(model.sam)
        held = evaluate_interactive(predictor, held_out, n_iterations=4)
        ais = evaluate_automatic(SamPredictor(model.sam), decoder, held_out).msa
        first = evaluate_interactive(SamPredictor(model.sam), round_one, n_iterations=1)
    finally:
        if handle is not None:
            handle.detach()
    return {"box": held["box"], "i_b": held["i_b"], "ais": ais, "round_one_box": first["box"]}


def measure(model_name: str, steps: int, validate_every: int, folder: Path) -> str:
    torch.manual_seed(0)
    settings = DemoSettings(model=model_name, steps=steps, validate_every=validate_every)
    model = load_model(model_name, device="cpu")
    pick = recommend_preset("cpu", model.architecture)
    store_path = folder / f"{model_name}.sampeft.zarr"
    store = AnnotationStore.create(store_path)
    add_images(store, VALIDATION_SEEDS, split="val")
    add_images(store, TRAIN_SEEDS)
    print(f"{model_name}: round one ({pick.preset}, {steps} steps)", file=sys.stderr)
    first = train(settings, store_path, pick.preset, pick.blocks, folder / f"{model_name}_round1.safetensors")
    add_images(store, ROUND_TWO_SEEDS)
    print(f"{model_name}: round two from the base model", file=sys.stderr)
    scratch = train(settings, store_path, pick.preset, pick.blocks, folder / f"{model_name}_scratch.safetensors")
    print(f"{model_name}: round two continued from round one's adapter", file=sys.stderr)
    warm = train(
        settings, store_path, pick.preset, pick.blocks, folder / f"{model_name}_warm.safetensors", first["out"]
    )
    held_out = [(s.image, s.labels) for s in (make_sample("cells", seed) for seed in HELD_OUT_SEEDS[:2])]
    round_one = [(s.image, s.labels) for s in (make_sample("cells", seed) for seed in TRAIN_SEEDS)]
    print(f"{model_name}: evaluating base, round one, and both round twos", file=sys.stderr)
    rows = [
        ("base model", None, None),
        ("round one", first, first["out"]),
        ("round two from the base model", scratch, scratch["out"]),
        ("round two continued from round one", warm, warm["out"]),
    ]
    lines = [
        f"**{model_name}** ({pick.preset}, {steps} steps of {settings.objects_per_image} objects, validation "
        f"every {validate_every}, seed 0; validation: {len(VALIDATION_SEEDS)} images of the store's "
        "validation split):",
        "",
        "| run | lr | best val (step) | reached round one's val at step | reached from-scratch best at step "
        "| held-out Box | held-out I_B | held-out AIS | round-one images' Box |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run, path in rows:
        s = scores(model, path, held_out, round_one)
        if run is None:
            lines.append(
                f"| {name} | | | | | {s['box']:.3f} | {s['i_b']:.3f} | {s['ais']:.3f} | {s['round_one_box']:.3f} |"
            )
            continue
        to_first = reached(run["curve"], first["best"]) if run is not first else ""
        to_scratch = reached(run["curve"], scratch["best"]) if run is not first else ""
        lines.append(
            f"| {name} | {run['lr']:g} | {run['best']:.3f} ({run['best_step']}) | {to_first} | {to_scratch} | "
            f"{s['box']:.3f} | {s['i_b']:.3f} | {s['ais']:.3f} | {s['round_one_box']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="demo,lite_medsam")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--validate-every", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            start = time.perf_counter()
            print(measure(name, args.steps, args.validate_every, Path(tmp)))
            print(f"\n({name}: {time.perf_counter() - start:.0f} s in all)\n", flush=True)


if __name__ == "__main__":
    main()
