"""``napari-sam-peft train``: finetune a PEFT adapter on a store's training split.

The same entry point serves a terminal (a progress line on stderr), the Finetune widget's
worker process (``--events``: one JSON object per line on stdout) and ``torchrun``
(``torchrun --nproc_per_node N -m napari_sam_peft.cli train ...``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft import PRESETS
from napari_sam_peft.core.training.holdout import TRAINING_DATA

EXIT_OUT_OF_MEMORY = 3


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="finetune an adapter on a store's training images (early stopping on its validation images)",
        description="Train a PEFT preset on the training split of STORE and write the best adapter to --out "
        "(atomically, each time validation improves). Without a validation split in STORE, about 20%% of the "
        "training images (or, with one image, of its objects) are held out for validation and --evaluate "
        "(seeded by --seed); with a single object, nothing can be held out and the output says that the "
        "scores are on the training data. Without --out, a new run folder is made next to the store "
        "(STORE's name with .adapters). Exit status: 0 done or stopped, 2 bad input, 3 out of memory, 1 other "
        "failure. Runs under torchrun for several GPUs.",
    )
    parser.add_argument("store", type=Path, metavar="STORE")
    parser.add_argument("--model", required=True, metavar="NAME|FILE")
    parser.add_argument("--preset", required=True, choices=list(PRESETS))
    parser.add_argument("--blocks", default=None, help="encoder blocks, e.g. 'last 1', '6-11' (preset default)")
    parser.add_argument("--steps", type=int, default=200, help="training steps, one image each (default 200)")
    parser.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate (the paper's default 1e-5)")
    parser.add_argument("--rank", type=int, default=None, help="LoRA/FacT rank (preset default)")
    parser.add_argument("--objects-per-image", type=int, default=8, help="objects per step (default 8)")
    parser.add_argument("--validate-every", type=int, default=25, help="steps between validations (default 25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, metavar="ADAPTER.safetensors")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="embedding cache to reuse (frozen-encoder presets)"
    )
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="at the end, evaluate base vs adapter (mSA) on the validation images (or those held out)",
    )
    parser.add_argument("--events", action="store_true", help="print progress as JSON lines on stdout")
    parser.add_argument(
        "--stop-file", type=Path, default=None, help="stop (and keep the best adapter) once it exists"
    )
    parser.set_defaults(run=run)


def job_from_args(args: argparse.Namespace):
    from napari_sam_peft.core.training.job import TrainingJob

    return TrainingJob(
        store=args.store,
        model=args.model,
        preset=args.preset,
        out=args.out,
        blocks=args.blocks,
        rank=args.rank,
        lr=args.lr,
        steps=args.steps,
        objects_per_image=args.objects_per_image,
        validate_every=args.validate_every,
        device=args.device,
        seed=args.seed,
        cache_dir=args.cache_dir,
        evaluate=args.evaluate,
    )


def run(args: argparse.Namespace) -> int:
    from napari_sam_peft.core.training.job import error_event, run_job

    job = job_from_args(args)
    emit = _print_json if args.events else _print_progress

    def should_stop() -> bool:
        return args.stop_file is not None and args.stop_file.exists()

    try:
        record = run_job(job, emit, should_stop)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - every failure becomes one event and an exit status
        event = error_event(error, device=job.device, adapter=job.out)
        if args.events:
            _print_json(event)
            return {"bad_input": 2, "out_of_memory": EXIT_OUT_OF_MEMORY}.get(event["kind"], 1)
        if isinstance(error, SamPeftError):
            raise
        print(f"napari-sam-peft train: {event['message']}", file=sys.stderr)
        return EXIT_OUT_OF_MEMORY if event["kind"] == "out_of_memory" else 1
    finally:
        _shutdown_distributed()
    if not args.events:
        score = record["best_score"]
        print(
            f"\n{record['status']}: wrote {record['adapter']} ({record['method']}, val box IoU {score:.3f}, "
            f"validation: {record['validation']['validation']})",
            file=sys.stderr,
        )
        if record["evaluation"]:
            print(_evaluation_table(record["evaluation"]))
    return 0


def _shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _print_json(event: dict) -> None:
    print(json.dumps(event, default=str), flush=True)


def _print_progress(event: dict) -> None:
    kind = event["event"]
    if kind == "started":
        print(
            f"training {event['method']}: {event['trainable_params']:,} parameters, "
            f"{event['train_images']} training and {event['val_images']} validation images on {event['device']}",
            file=sys.stderr,
        )
        print(f"validation and evaluation on: {event['measured_on']}", file=sys.stderr)
        if event["validation"] == TRAINING_DATA:
            print(
                "warning: validation scores are measured on the training data, so they overestimate the adapter; "
                "annotate more objects or mark some images as validation",
                file=sys.stderr,
            )
    elif kind == "prepared":
        print(
            f"frozen encoder stages run on every image in {event['seconds']:.1f} s "
            f"({event['reused']} embeddings reused from the cache)",
            file=sys.stderr,
        )
    elif kind == "progress":
        val = f"  val {event['val_score']:.3f}" if event["val_score"] is not None else ""
        eta = f"ETA {event['eta_seconds']:.0f} s" if event["eta_seconds"] is not None else ""
        print(
            f"\rstep {event['step']}/{event['steps']}  loss {event['loss']:.3f}{val}  "
            f"{event['its_per_second']:.2f} it/s  {eta}   ",
            end="\n" if event["val_score"] is not None else "",
            file=sys.stderr,
            flush=True,
        )
    elif kind == "evaluating":
        print(f"evaluating base and adapter on {event['images']} images ...", file=sys.stderr)


def _evaluation_table(evaluation: dict) -> str:
    from napari_sam_peft.cli.evaluate import METRIC_NAMES
    from napari_sam_peft.core.evaluation.interactive import METRICS

    rows = [f"mSA on {evaluation['measured_on']}", f"{'':<16}" + "".join(f"{n:>8}" for n in METRIC_NAMES)]
    for label in ("base", "adapter"):
        rows.append(f"{label:<16}" + "".join(f"{evaluation[label][m]:>8.3f}" for m in METRICS))
    rows.append(
        f"{'change':<16}" + "".join(f"{evaluation['adapter'][m] - evaluation['base'][m]:>+8.3f}" for m in METRICS)
    )
    return "\n".join(rows)
