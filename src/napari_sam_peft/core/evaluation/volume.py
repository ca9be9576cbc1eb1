"""Scoring volumes in 3D: objects propagated from one box, and the automatic 3D segmentation.

``volume``: for each true object, a box on its middle slice (the slice in the middle of the ones it
spans) is segmented and propagated through z with the annotator's settings (micro_sam's
annotator_3d defaults; callers pass :func:`~..volume.propagation.default_settings` of the model);
the 3D objects, painted in order into one label volume, are scored against the truth with the mean
segmentation accuracy (``elf``), as the 2D columns are.
``volume_ais``: the automatic 3D segmentation (AIS per slice with the instance decoder, else mask
generation), merged across z, scored the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..annotation.prompting import ObjectPrompts, segment_object
from ..volume.automatic import automatic_volume
from ..volume.propagation import PropagationSettings, propagate
from ..volume.slice_features import VolumeFeatures
from ..volume.volumes import volume_slice


@dataclass(frozen=True)
class VolumeScore:
    """mSA (0..1) of propagated 3D objects and of the automatic 3D result, over a number of volumes."""

    volume: float
    volume_ais: float | None  # None when not asked for (``automatic=False``)
    method: str  # "ais" or "amg": what made the automatic result
    n_volumes: int
    n_objects: int


def embed_slices(predictor: Any, volume: Any) -> VolumeFeatures:
    """Every slice's embeddings, computed with micro_sam one slice at a time (no cache)."""
    from micro_sam.util import precompute_image_embeddings

    features = VolumeFeatures(int(np.shape(volume)[0]))
    for z in range(features.n_slices):
        plane = volume_slice(volume, z)
        features.put(z, precompute_image_embeddings(predictor, plane, ndim=2, verbose=False))
    return features


def middle_slice_box(labels: np.ndarray, label: int) -> tuple[int, ObjectPrompts]:
    """An object's middle slice and the box around it there, as (row0, col0, row1, col1)."""
    slices = np.flatnonzero((labels == label).any(axis=(1, 2)))
    z = int(slices[len(slices) // 2])
    rows, cols = np.nonzero(labels[z] == label)
    return z, ObjectPrompts(box=np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], dtype=float))


def propagated_objects(
    predictor: Any, features: VolumeFeatures, labels: np.ndarray, settings: PropagationSettings | None = None
) -> np.ndarray:
    """Each true object of ``labels`` segmented from one box on its middle slice and propagated."""
    predicted = np.zeros(labels.shape, dtype=np.uint32)
    for index, label in enumerate(int(v) for v in np.unique(labels) if v != 0):
        z, prompts = middle_slice_box(labels, label)
        seed = segment_object(predictor, features.slice_embeddings(z), prompts)
        if seed.any():
            predicted[propagate(predictor, features, {z: seed}, settings).mask] = index + 1
    return predicted


def evaluate_volumes(
    predictor: Any,
    decoder: Any | None,
    samples: Iterable[tuple[Any, np.ndarray]],
    *,
    settings: PropagationSettings | None = None,
    points_per_side: int | None = None,
    automatic: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> VolumeScore:
    """Mean 3D mSA over (volume, 3D instance labels) pairs, by propagation and (``automatic``) by the
    automatic 3D segmentation: AIS with ``decoder``, else mask generation on every slice (slow)."""
    from elf.evaluation import mean_segmentation_accuracy

    samples = list(samples)
    propagated, automatic_scores, n_objects = [], [], 0
    for index, (volume, labels) in enumerate(samples):
        labels = np.asarray(labels)
        features = embed_slices(predictor, volume)
        objects = propagated_objects(predictor, features, labels, settings)
        propagated.append(float(mean_segmentation_accuracy(objects, labels)))
        if automatic:
            result = automatic_volume(predictor, decoder, volume, features, points_per_side=points_per_side)
            automatic_scores.append(float(mean_segmentation_accuracy(result, labels)))
        n_objects += len(np.unique(labels)) - 1
        if progress is not None:
            progress(index + 1, len(samples))
    return VolumeScore(
        float(np.mean(propagated)) if propagated else 0.0,
        (float(np.mean(automatic_scores)) if automatic_scores else 0.0) if automatic else None,
        "ais" if decoder is not None else "amg",
        len(samples),
        n_objects,
    )
