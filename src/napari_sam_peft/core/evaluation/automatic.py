"""Scoring automatic segmentation: mSA of the whole-image result against the true instances.

One function segments each image without prompts (AIS with the instance decoder where there is
one, else micro_sam's automatic mask generation), and the result is scored with the mean
segmentation accuracy (``elf.evaluation.mean_segmentation_accuracy``, as the paper's AIS column).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from ..instance.segmentation import instance_segmentation


@dataclass(frozen=True)
class AutomaticScore:
    """mSA (0..1) of the automatic result, which method made it, and its seconds per image."""

    msa: float
    method: str  # "ais" (instance decoder) or "amg" (mask generation)
    seconds_per_image: float
    n_images: int


def automatic_method(
    predictor: Any, decoder: nn.Module | None, points_per_side: int | None = None
) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """``segment(image) -> labels`` for one image: AIS with ``decoder``, else AMG; and the method's name."""
    from micro_sam.util import precompute_image_embeddings

    from ..annotation.automatic import automatic_segmentation

    def segment(image: np.ndarray) -> np.ndarray:
        embeddings = precompute_image_embeddings(predictor, image, ndim=2, verbose=False)
        if decoder is not None:
            return instance_segmentation(predictor, decoder, image, embeddings)
        return automatic_segmentation(predictor, image, embeddings, points_per_side=points_per_side)

    return segment, "ais" if decoder is not None else "amg"


def evaluate_automatic(
    predictor: Any,
    decoder: nn.Module | None,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    points_per_side: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AutomaticScore:
    """Mean mSA over (image, instance labels) pairs of the automatic result (embedding time included)."""
    from elf.evaluation import mean_segmentation_accuracy

    samples = list(samples)
    segment, method = automatic_method(predictor, decoder, points_per_side)
    scores, start = [], time.perf_counter()
    for index, (image, labels) in enumerate(samples):
        scores.append(float(mean_segmentation_accuracy(segment(image), labels)))
        if progress:
            progress(index + 1, len(samples))
    seconds = (time.perf_counter() - start) / max(len(samples), 1)
    return AutomaticScore(float(np.mean(scores)) if scores else 0.0, method, seconds, len(samples))
