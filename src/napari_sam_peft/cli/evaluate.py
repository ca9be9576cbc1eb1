"""``napari-sam-peft evaluate``: the paper's interactive protocol on a store's split.

Scores are measured on the validation split unless ``--split train`` explicitly asks for the
training images; the output always says which (``validation`` and ``measured_on`` in ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from napari_sam_peft.cli.options import add_model_options
from napari_sam_peft.core.data.store import SPLITS, AnnotationStore
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.training.holdout import TRAINING_DATA, VALIDATION_SPLIT

NAME = "evaluate"
HELP = "mSA for Point, Box, I_P, I_B and automatic segmentation (AIS) on a store's validation images"
DESCRIPTION = """\
Evaluate a model (and optionally an adapter) with the paper's interactive protocol: one point or box
per object, then 8 correction iterations; mean segmentation accuracy (0..1). By default on the
validation split (exit status 2 if the store has none); --split train evaluates on the training
images, and the output says that these scores are not held out. "ais" is the mSA of the automatic
segmentation without prompts: instance segmentation with the adapter's decoder (or micro_sam's, for
a registry model that has one), else micro_sam's automatic mask generation ("ais_method" says which).
A volume counts with its slices that hold objects in these 2D scores, and adds "volume" (the mSA of
its 3D objects, each propagated through z from one box on its middle slice) and "volume_ais" (the
automatic 3D segmentation, per slice and merged across z).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``napari-sam-peft evaluate``."""
    parser.add_argument("store", type=Path, metavar="STORE")
    add_model_options(parser, "'demo', a registry name or a file", device="auto")
    parser.add_argument(
        "--adapter", type=Path, default=None, metavar="FILE", help="adapter .safetensors to attach"
    )
    parser.add_argument(
        "--split", choices=SPLITS, default="val", help="val (default) or train (scores on training images)"
    )
    parser.add_argument("--iterations", type=int, default=8, help="correction iterations (default 8)")
    parser.add_argument(
        "--no-automatic",
        dest="automatic",
        action="store_false",
        help="leave out the automatic segmentation (ais, volume_ais): without an instance decoder it runs "
        "micro_sam's mask generation, a grid of point prompts on every image and slice, the slowest part",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON (scores, split, validation, measured_on, n_images)"
    )


def run(args: argparse.Namespace) -> int:
    from napari_sam_peft.core.evaluation.base_vs_adapter import evaluate_model
    from napari_sam_peft.core.evaluation.report import scores_line
    from napari_sam_peft.core.peft import Adapter
    from napari_sam_peft.core.sam.loading import check_model_name, load_model
    from napari_sam_peft.core.volume.store_slices import read_samples

    check_model_name(args.model)  # a misspelt model is said first, before the store's content
    store = AnnotationStore(args.store)
    images = [i for i in store.snapshot().images if i.split == args.split and i.objects]
    if not images and args.split == "val":
        raise SamPeftError(
            "The store has no annotated validation images (no val images with objects) to evaluate on. Mark some "
            "annotated images as validation (the Dataset widget's split, or napari-sam-peft store add IMAGE "
            "--labels LABELS --split val), or pass --split train to evaluate on the training images (those "
            "scores are not held out: they overestimate a model trained on them)."
        )
    if not images:
        from napari_sam_peft.core.training.plan import check_training_data

        check_training_data(store.info())
    n_objects = sum(len(i.objects) for i in images)
    where = f"{len(images)} image{'s' if len(images) != 1 else ''}, {n_objects} objects"
    if args.split == "val":
        validation, measured_on = VALIDATION_SPLIT, f"the store's validation split: {where}"
    else:
        validation = TRAINING_DATA
        measured_on = f"training data, as --split train asks: {where}, not held out (optimistic for a model "
        measured_on += "trained on them)"
    model = load_model(args.model, device=args.device)
    adapter = Adapter.load(args.adapter) if args.adapter is not None else None
    samples, _ = read_samples(store, images)  # a volume gives its slices with objects
    volumes = [(store.lazy_image(i.image_id), store.labels(i)) for i in images if i.volume]

    report = EvaluationProgress(len(samples), len(volumes))
    measured = evaluate_model(
        model,
        adapter,
        samples,
        volumes,
        automatic=args.automatic,
        n_iterations=args.iterations,
        progress=report.progress,
        phase=report.phase,
    )
    report.done()
    method = measured.automatic.method if measured.automatic is not None else "not run (--no-automatic)"
    result: dict[str, Any] = {**measured.scores, "ais_method": method}
    if measured.volumes is not None:
        result["n_volumes"] = measured.volumes.n_volumes
    if args.json:
        described = {"split": args.split, "validation": validation, "measured_on": measured_on}
        print(json.dumps({**result, **described, "n_images": len(images)}, indent=2))
    else:
        print(f"mSA on {measured_on}:  {scores_line(result)} (automatic: {method.upper()})")
    return 0


class EvaluationProgress:
    """What ``evaluate`` is doing and how long is left, on stderr: a line per part, counting its images."""

    def __init__(self, n_images: int, n_volumes: int) -> None:
        from napari_sam_peft.core.evaluation.base_vs_adapter import VOLUMES

        self.volumes = VOLUMES
        self.totals = {VOLUMES: n_volumes}
        self.n_images = n_images
        self.name = ""
        self.started = 0.0
        self.open = False

    def phase(self, name: str) -> None:
        """A part of the evaluation starts."""
        import time

        self.done()
        self.name, self.started = name, time.perf_counter()
        count = self.totals.get(name, self.n_images)
        things = ("volume" if name == self.volumes else "image") + ("s" if count != 1 else "")
        print(f"{name}: {count} {things} ...", end="", file=sys.stderr, flush=True)
        self.open = True

    def progress(self, done: int, total: int) -> None:
        """Another image (or volume) of the part is scored: say how many and how long is left."""
        import time

        elapsed = time.perf_counter() - self.started
        left = elapsed / done * (total - done)
        things = "volume" if self.name == self.volumes else "image"
        when = f", about {_duration(left)} left" if done < total else f", {_duration(elapsed)}"
        print(f"\r{self.name}: {things} {done}/{total}{when}   ", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        """End the current part's line."""
        if self.open:
            print(file=sys.stderr, flush=True)
            self.open = False


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
