"""What both headless demos share: the settings, a session on a fresh store, the training job, and a run
trained through the session as the Finetune widget trains it (a worker process, the hot reload)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..core.training.job import TrainingJob
    from ..core.training.runs import RunRecord
    from ..session import AnnotatorSession

Say = Callable[[str], None]

TRAIN_SEEDS = (0, 1, 2)
ROUND_TWO_SEEDS = (3, 4, 5)
HELD_OUT_SEEDS = (100, 101, 102, 103, 104)
ACCEPT_IOU = 0.8  # what a user accepts without touching it


@dataclass
class DemoSettings:
    model: str = "lite_medsam"
    preset: str | None = None  # None: the recommender's choice
    blocks: str | None = None
    steps: int = 24
    lr: float | None = None  # None: the recommended rate for the model and preset
    # None: the recipe's (the demo trains on the CPU: the CPU recipe, core.training.recipe)
    objects_per_image: int | None = None
    sub_iterations: int | None = None
    validate_every: int | None = None
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


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (0 for two empty ones)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def demo_session(settings: DemoSettings, store_path: Path) -> AnnotatorSession:
    """A session on the demo's model (CPU), its embedding cache beside the store, and a new store."""
    from ..core.annotation.embeddings import EmbeddingCache
    from ..core.sam.loading import load_model
    from ..session import AnnotatorSession

    if store_path.exists():
        shutil.rmtree(store_path)
    session = AnnotatorSession(cache=EmbeddingCache(store_path.parent / "embeddings"), default_store=lambda: None)
    session.model.set_base(load_model(settings.model, device="cpu"))
    session.annotations.open_store(store_path)
    return session


def demo_job(settings: DemoSettings, store_path: Path, preset: str, blocks: str | None, out: Path) -> TrainingJob:
    """The training job of a demo round (``from_adapter`` is set by the caller for a continuation)."""
    from ..core.training.job import TrainingJob

    return TrainingJob(
        store=store_path,
        model=settings.model,
        preset=preset,
        blocks=blocks,
        lr=settings.lr,  # None: the run takes the recommended rate and says so
        steps=settings.steps,
        objects_per_image=settings.objects_per_image,
        sub_iterations=settings.sub_iterations,
        validate_every=settings.validate_every,
        device="cpu",
        with_decoder=True,
        evaluate=False,  # the demo evaluates on its held-out images itself
        seed=settings.seed,
        out=out,
    )


def train(session: AnnotatorSession, job: TrainingJob, say: Say) -> RunRecord:
    """Train ``job`` through the session (a worker process; each new best adapter goes live, as in the
    Finetune widget) and return the run's record.

    Raises
    ------
    SamPeftError
        The run failed (its message).
    """
    from ..core.errors import SamPeftError
    from ..core.training.events import Error, Progress
    from ..core.training.runs import RECORD_NAME, read_run

    def show_progress(event: object) -> None:
        if isinstance(event, Progress) and event.val_score is not None:
            say(f"  step {event.step}/{event.steps}: loss {event.loss:.3f}, val box IoU {event.val_score:.3f}")

    session.training.event.connect(show_progress)
    try:
        process = session.training.start(job)
        end = session.training.wait()
    finally:
        session.training.event.disconnect(show_progress)
    if isinstance(end, Error):
        raise SamPeftError(f"Training failed: {end.message}")
    return read_run(process.path.parent / RECORD_NAME)
