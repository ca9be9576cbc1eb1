"""``napari-sam-peft train``: finetune a PEFT adapter on a store's training split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft import PRESETS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="finetune an adapter on a store's training images (early stopping on its validation images)",
        description="Train a PEFT preset on the training split of STORE and write the best adapter to --out "
        "(atomically, each time validation improves).",
    )
    parser.add_argument("store", type=Path, metavar="STORE")
    parser.add_argument("--model", required=True, metavar="NAME|FILE")
    parser.add_argument("--preset", required=True, choices=list(PRESETS))
    parser.add_argument("--blocks", default=None, help="encoder blocks, e.g. 'last 1', '6-11' (preset default)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate (the paper's default 1e-5)")
    parser.add_argument("--rank", type=int, default=None, help="LoRA/FacT rank (preset default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, required=True, metavar="ADAPTER.safetensors")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from napari_sam_peft.core.models import load_model
    from napari_sam_peft.core.peft import spec_from_preset
    from napari_sam_peft.core.store import AnnotationStore
    from napari_sam_peft.core.training import TrainingConfig, train

    if args.out.suffix != ".safetensors":
        raise SamPeftError(f"--out must end in .safetensors, not {args.out.name!r}.")
    store = AnnotationStore(args.store)
    snapshot = store.snapshot()
    samples = {
        split: [
            (store.image(i.image_id), store.labels(i)) for i in snapshot.images if i.split == split and i.objects
        ]
        for split in ("train", "val")
    }
    model = load_model(args.model, device=args.device)
    overrides = {"rank": args.rank} if args.rank is not None else {}
    spec = spec_from_preset(args.preset, model.architecture.depth, blocks=args.blocks, **overrides)

    def report(event) -> None:
        val = f"  val {event.val_score:.3f}" if event.val_score is not None else ""
        print(
            f"\rstep {event.step}/{event.steps}  loss {event.loss:.3f}{val}  {event.its_per_second:.2f} it/s  "
            f"ETA {event.eta_seconds:.0f} s",
            end="\n" if event.val_score is not None else "",
            file=sys.stderr,
            flush=True,
        )

    adapter = train(
        model,
        spec,
        samples["train"],
        samples["val"],
        TrainingConfig(steps=args.steps, lr=args.lr),
        on_event=report,
        on_best=lambda best: best.save(args.out),
        training_snapshot=snapshot.snapshot_id,
    )
    score = adapter.metrics["val_box_iou"]
    print(f"\nwrote {args.out} ({spec.describe(model.architecture.depth)}, val box IoU {score:.3f})")
    return 0
