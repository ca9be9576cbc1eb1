"""The annotate-correct-finetune loop on volumes, offline and without a display.

``napari-sam-peft demo --headless --sample volume`` runs it on generated nuclei volumes with
LiteMedSAM's pretrained weights (``--model demo``: the small demo model):

1. **Annotate** each training volume as a user of the 3D annotator does: for each nucleus, a box
   on its middle slice (``S``), then ``Shift+S`` carries it through z (micro_sam's
   ``segment_mask_in_volume`` with annotator_3d's defaults). A 3D object that matches the truth
   well (IoU >= 0.8) is committed as it is; otherwise the user draws a second box on the slice
   where the object is worst and propagates again from both slices (the gap is filled from both
   ends); an object still wrong after that is painted by hand (the true object).
2. **Finetune** the recommended preset with the instance decoder on the slices that hold
   objects, with the training job the Finetune widget's worker runs.
3. **Evaluate** base against adapter on a held-out volume: the paper's 2D scores on its slices
   that hold objects (:attr:`VolumeDemoSettings.slices_2d` of them), ``3D`` (each object propagated from
   one box on its middle slice) and
   ``3D AIS`` (the automatic 3D segmentation, per slice merged across z; base: mask generation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.evaluation.report import EvaluationReport

if TYPE_CHECKING:
    from ..session import AnnotatorSession
from .demo_session import ACCEPT_IOU, DemoSettings, Say, demo_job, demo_session, iou, train


@dataclass
class VolumeDemoSettings(DemoSettings):
    """The demo's settings (see :class:`~.demo_loop.DemoSettings`) for volumes: one round of two
    training volumes, one held-out volume with fewer slices (its base is scored with mask generation
    on every slice, the slow part of the demo)."""

    train_seeds: tuple[int, ...] = (1, 2)
    round_two_seeds: tuple[int, ...] = ()
    held_out_seeds: tuple[int, ...] = (100,)
    shape: tuple[int, int, int] = (16, 256, 256)
    held_out_shape: tuple[int, int, int] = (12, 256, 256)
    #: the held-out slices the 2D scores are measured on, evenly spaced among those with objects (each
    #: costs LiteMedSAM about 22 s a model on 2 CPU cores: the 3D scores are the point here)
    slices_2d: int = 4


@dataclass
class VolumeCorrections:
    """How the simulated user got each 3D object."""

    accepted_propagated: int = 0
    corrected_with_box: int = 0
    painted: int = 0

    def line(self) -> str:
        """``"20 propagated objects accepted, 6 fixed with a second box, 2 painted"``."""
        return (
            f"{self.accepted_propagated} propagated objects accepted, {self.corrected_with_box} fixed with a "
            f"second box, {self.painted} painted"
        )


@dataclass
class VolumeDemoResult:
    """What the volume demo did and measured."""

    model: str
    preset: str
    adapter: Path
    corrections: VolumeCorrections
    report: EvaluationReport
    seconds: dict[str, float] = field(default_factory=dict)

    def table(self) -> str:
        """The before/after table, as markdown."""
        return self.report.markdown("held-out volume mSA", self.model, f"+ {self.preset} adapter")


def _box(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], dtype=float)


def correct_volume(
    session: AnnotatorSession,
    name: str,
    volume: np.ndarray,
    truth: np.ndarray,
    counts: VolumeCorrections,
    settings: Any = None,
) -> None:
    """Segment every true object of ``truth`` by a box and propagation (with ``settings``: the annotator's
    :class:`~..core.volume.propagation.PropagationSettings`), correcting as a user would, and commit each 3D
    object in the session with its prompt's slice, as the Segment widget does on a volume.
    """
    from ..core.annotation.prompting import ObjectPrompts
    from ..core.evaluation.volume import middle_slice_box
    from ..session.volume_annotator import VolumeAnnotator

    annotator = session.open(name, volume)  # as the Segment widget opens the volume it shows
    assert isinstance(annotator, VolumeAnnotator)
    annotator.embed(lambda: volume.shape[0] // 2)
    labels = session.annotations.open_image(name, volume, volume=True).labels
    for label in (int(v) for v in np.unique(truth) if v != 0):
        gt = truth == label
        z, prompts = middle_slice_box(truth, label)
        prompts.slice = z
        seeds = {z: annotator.segment_slice(z, prompts)}
        mask = annotator.propagate(seeds, settings).mask if seeds[z].any() else np.zeros_like(gt)
        if iou(mask, gt) < ACCEPT_IOU:
            spans = np.flatnonzero(gt.any(axis=(1, 2)))
            worst = min((int(s) for s in spans if s != z), key=lambda s: iou(mask[s], gt[s]), default=z)
            second = annotator.segment_slice(worst, ObjectPrompts(box=_box(gt[worst]), slice=worst))
            if second.any() and worst != z:
                mask = annotator.propagate({**seeds, worst: second}, settings).mask
            if iou(mask, gt) >= ACCEPT_IOU:
                counts.corrected_with_box += 1
            else:
                counts.painted += 1
                mask = gt
        else:
            counts.accepted_propagated += 1
        source = "painted" if mask is gt else "prompts"
        session.annotations.commit(name, volume, labels, mask.astype(np.uint32), [prompts], source)


def _evaluate(model: Any, adapter_path: Path, settings: VolumeDemoSettings) -> EvaluationReport:
    """Held-out 2D scores on the volume's slices with objects and the 3D scores, base against adapter."""
    from ..core.data.sample_volume import make_volume
    from ..core.evaluation.base_vs_adapter import evaluate_base_and_adapter
    from ..core.peft import Adapter
    from ..core.volume.store_slices import slices_with_objects

    volumes = [make_volume(seed, settings.held_out_shape) for seed in settings.held_out_seeds]
    pairs = [(v.image, v.labels) for v in volumes]
    slices = []
    for v in volumes:
        with_objects = slices_with_objects(v.labels)
        picked = np.linspace(0, len(with_objects) - 1, min(settings.slices_2d, len(with_objects))).round()
        slices += [(v.image[with_objects[int(i)]], v.labels[with_objects[int(i)]]) for i in picked]
    iterations = settings.correction_iterations
    base, adapted = evaluate_base_and_adapter(
        model,
        Adapter.load(adapter_path),
        slices,
        pairs,
        n_iterations=iterations,
        points_per_side=settings.points_per_side,
        automatic_2d=False,  # the slices interactively; the automatic result is scored in 3D
    )
    before = {**base.scores, "volume_ais": base.scores.get("volume_ais", 0.0)}
    after = {**adapted.scores, "volume_ais": adapted.scores.get("volume_ais", 0.0)}
    n_objects = sum(len(np.unique(v.labels)) - 1 for v in volumes)
    return EvaluationReport(
        validation="held-out volume",
        measured_on=(
            f"{len(volumes)} held-out generated volume of {settings.held_out_shape[0]} slices, {n_objects} 3D "
            f"objects (the 2D scores on {len(slices)} of its slices with objects; I_P and I_B after {iterations} "
            "correction iterations); 3D: each object propagated from one box on its middle slice; 3D AIS: the "
            "automatic 3D segmentation (base: mask generation)"
        ),
        images=len(volumes),
        objects=n_objects,
        base=before,
        adapter=after,
    )


def run_volume_demo(
    workdir: str | Path, settings: VolumeDemoSettings | None = None, say: Say = print
) -> VolumeDemoResult:
    """Annotate the training volumes, finetune on them and evaluate, in ``workdir``."""
    import torch

    from ..core.data.sample_volume import make_volume
    from ..core.data.store import image_id_for
    from ..core.peft.recommend import recommend_preset
    from ..core.volume.propagation import default_settings

    settings = settings or VolumeDemoSettings()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    store_path = workdir / "demo_volume.sampeft.zarr"
    session = demo_session(settings, store_path)
    model = session.model.require()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    counts = VolumeCorrections()
    propagation = default_settings(model.architecture)
    for seed in settings.train_seeds:
        sample = make_volume(seed, settings.shape)
        correct_volume(session, f"nuclei volume {seed}", sample.image, sample.labels, counts, propagation)
        session.annotations.set_split(image_id_for(sample.image), "train")
    seconds["annotate"] = time.perf_counter() - start
    info = session.annotations.store.info()
    say(
        f"annotated {len(settings.train_seeds)} volumes of {settings.shape[0]} slices by a box on each nucleus' "
        f"middle slice and Shift+S: {counts.line()}; {info['train_samples']} slices hold objects"
    )
    pick = recommend_preset("cpu", model.architecture)
    preset = settings.preset or pick.preset
    blocks = settings.blocks if settings.preset else pick.blocks
    out = workdir / "demo_volume_adapter.safetensors"
    say(
        f"finetuning {settings.model} with {preset} and the instance decoder on those slices, "
        f"{settings.steps} steps (the top z-range of each volume is held out for validation)"
    )
    start = time.perf_counter()
    train(session, demo_job(settings, store_path, preset, blocks, out), say)
    seconds["finetune"] = time.perf_counter() - start
    say("evaluating base and adapter on a held-out volume (mask generation on every slice for the base) ...")
    start = time.perf_counter()
    session.model.set_adapter(None)  # the evaluation attaches the adapter to the base model itself
    report = _evaluate(model, out, settings)
    seconds["evaluate"] = time.perf_counter() - start
    return VolumeDemoResult(settings.model, preset, out, counts, report, seconds)
