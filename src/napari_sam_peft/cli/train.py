"""``napari-sam-peft train``: finetune a PEFT adapter on a store's training split.

The same entry point serves a terminal (a progress line on stderr), the Finetune widget's
worker process (``--events``: one JSON object per line on stdout) and ``torchrun``
(``torchrun --nproc_per_node N -m napari_sam_peft.cli train ...``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.training.events import Evaluating, Event, Prepared, Progress, Started, error_event
from napari_sam_peft.core.training.holdout import TRAINING_DATA
from napari_sam_peft.core.training.job import TrainingJob, format_value, job_fields
from napari_sam_peft.core.training.runs import RunRecord

EXIT_OUT_OF_MEMORY = 3


NAME = "train"
HELP = "finetune an adapter on a store's training images (early stopping on its validation images)"
DESCRIPTION = (
    "Train a PEFT preset on the training split of STORE and write the best adapter to --out "
    "(atomically, each time validation improves). Without a validation split in STORE, about 20% of the "
    "training images (or, with one image, of its objects) are held out for validation and --evaluate "
    "(seeded by --seed); with a single object, nothing can be held out and the output says that the "
    "scores are on the training data. Without --out, a new run folder is made next to the store "
    "(STORE's name with .adapters). Exit status: 0 done or stopped, 2 bad input, 3 out of memory, 1 other "
    "failure. Runs under torchrun for several GPUs."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``napari-sam-peft train``."""
    add_job_options(parser)
    parser.add_argument("--events", action="store_true", help="print progress as JSON lines on stdout")
    parser.add_argument(
        "--stop-file", type=Path, default=None, help="stop (and keep the best adapter) once it exists"
    )


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """An argument for each field of the training job's schema (:class:`TrainingJob`)."""
    for job_field in job_fields():
        option = job_field.option
        if option.positional:
            parser.add_argument(job_field.name, type=job_field.type, metavar=option.metavar, help=option.help)
        elif job_field.type is bool:
            parser.add_argument(job_field.flag, dest=job_field.name, action="store_true", help=option.help)
        else:
            parser.add_argument(
                job_field.flag,
                dest=job_field.name,
                type=job_field.type,
                required=job_field.required,
                default=None if job_field.required else job_field.default,
                choices=option.choices if option.choices and option.strict else None,
                metavar=option.metavar,
                help=job_field.help.replace("%", "%%"),
            )


def job_from_args(args: argparse.Namespace) -> TrainingJob:
    """The job that parsed ``train`` arguments describe."""
    return TrainingJob(**{job_field.name: getattr(args, job_field.name) for job_field in job_fields()})


def run(args: argparse.Namespace) -> int:
    job = job_from_args(args)

    def train(emit, should_stop) -> RunRecord:
        """On this machine, or on a Dask cluster (``--cluster``)."""
        from napari_sam_peft.core.cluster.target import ClusterTarget

        if ClusterTarget.from_job(job) is not None:
            from napari_sam_peft.core.cluster.remote_run import run_on_cluster

            say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
            return run_on_cluster(job, emit, should_stop, say=say)
        from napari_sam_peft.core.training.run import run_job

        return run_job(job, emit, should_stop)

    return follow_run(train, args, job.device, job.out)


Train = Callable[[Callable[[Event], None], Callable[[], bool]], RunRecord]  # (emit, should_stop) -> record


def follow_run(train: Train, args: argparse.Namespace, device: str, adapter: Path | None) -> int:
    """Run ``train(emit, should_stop)``, reporting its events (``args.events``: JSON lines) and its end;
    returns the exit status (``cluster attach`` follows a cluster run with it too)."""
    from napari_sam_peft.core.cluster.remote_run import RemoteRunError

    emit = _print_json if args.events else _print_progress

    def should_stop() -> bool:
        return args.stop_file is not None and args.stop_file.exists()

    try:
        record = train(emit, should_stop)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001 - every failure becomes one event and an exit status
        event = error.event if isinstance(error, RemoteRunError) else error_event(error, device, adapter)
        status = {"bad_input": 2, "cluster": 2, "out_of_memory": EXIT_OUT_OF_MEMORY}.get(event.kind, 1)
        if args.events:
            _print_json(event)
            return status
        if status == 2:
            raise SamPeftError(event.message) from None  # one line on stderr, exit status 2
        print(f"napari-sam-peft train: {event.message}", file=sys.stderr)
        return status
    finally:
        _shutdown_distributed()
    if not args.events:
        score = record.best_score
        print(
            f"\n{record.status}: wrote {record.adapter} ({record.method}, val box IoU {score:.3f}, "
            f"validation: {record.validation['validation']})",
            file=sys.stderr,
        )
        if record.evaluation is not None:
            print(record.evaluation.text())
    return 0


def _shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _print_json(event: Event) -> None:
    print(event.to_json(), flush=True)


def _print_progress(event: Event) -> None:
    if isinstance(event, Started):
        print(
            f"training {event.method}: {event.trainable_params:,} parameters, "
            f"{event.train_images} training and {event.val_images} validation images on {event.device}",
            file=sys.stderr,
        )
        print(f"validation and evaluation on: {event.measured_on}", file=sys.stderr)
        parent = event.continued_from
        if parent:
            print(
                f"continuing from {parent['adapter']} ({parent['hash'][:12]}): {parent['replay']}", file=sys.stderr
            )
        if event.recipe_summary:
            other = "paper" if event.recipe == "cpu" else "cpu"
            print(f"{event.recipe_summary} (--recipe {other} for the other)", file=sys.stderr)
        if event.lr_chosen:
            why = {
                "recommended": " (recommended for this model, method and recipe; --lr to change)",
                "recommended for a continuation": " (recommended for a continuation: half the rate for this model "
                "and method; --lr to change)",
            }.get(event.lr_chosen, "")
            print(f"learning rate {format_value(event.lr)}{why}", file=sys.stderr)
        why = f" ({event.precision_reason}; --precision to change)" if event.precision_reason != "given" else ""
        print(f"precision {event.precision}{why}", file=sys.stderr)
        if event.estimated_step_seconds:
            total = event.estimated_step_seconds * event.steps
            print(
                f"estimate: {event.estimated_step_seconds:.1f} s per step, {total / 60:.0f} min for {event.steps} "
                "steps (each step's progress line then says the measured time left)",
                file=sys.stderr,
            )
        if event.steps_chosen == "recommended":
            print(
                f"{event.steps} steps (recommended for {event.train_objects} training objects by the recipe; "
                "--steps to change)",
                file=sys.stderr,
            )
        elif event.steps_chosen.startswith("recommended"):
            print(
                f"{event.steps} steps (recommended for a continuation with {parent['new_objects']} new objects by "
                "the recipe; --steps to change)",
                file=sys.stderr,
            )
        if event.validation == TRAINING_DATA:
            print(
                "warning: validation scores are measured on the training data, so they overestimate the adapter; "
                "annotate more objects or mark some images as validation",
                file=sys.stderr,
            )
    elif isinstance(event, Prepared):
        print(
            f"frozen encoder stages run on every image in {event.seconds:.1f} s "
            f"({event.reused} embeddings reused from the cache)",
            file=sys.stderr,
        )
    elif isinstance(event, Progress):
        val = f"  val {event.val_score:.3f}" if event.val_score is not None else ""
        eta = f"ETA {event.eta_seconds:.0f} s" if math.isfinite(event.eta_seconds) else ""
        print(
            f"\rstep {event.step}/{event.steps}  loss {event.loss:.3f}{val}  "
            f"{event.its_per_second:.2f} it/s  {eta}   ",
            end="\n" if event.val_score is not None else "",
            file=sys.stderr,
            flush=True,
        )
    elif isinstance(event, Evaluating):
        print(f"evaluating base and adapter on {event.images} images ...", file=sys.stderr)
