"""Automatic 3D segmentation: each slice on its own (AIS with a decoder, else mask generation),
merged across z by micro_sam's ``merge_instance_segmentation_3d`` (as its
``automatic_3d_segmentation`` does, but on embeddings the session already has)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from .propagation import StoppedError
from .slice_features import VolumeFeatures
from .volumes import volume_slice


def automatic_volume(
    predictor: Any,
    decoder: Any | None,
    volume: Any,
    features: VolumeFeatures,
    *,
    points_per_side: int | None = None,
    object_size: float | None = None,
    autocast: Callable[[], AbstractContextManager] | None = None,
    min_object_size: int = 25,
    gap_closing: int | None = None,
    min_z_extent: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Instance labels (Z, Y, X) uint32 of a whole volume, objects merged across slices.

    ``decoder`` is the live instance decoder (None: automatic mask generation per slice, with a grid
    sized to the slice and ``object_size``, decoding in ``autocast``: see ``annotation.automatic``).
    Every slice must be embedded in ``features``. micro_sam's merge defaults (beta 0.5).

    Raises
    ------
    StoppedError
        When ``should_stop`` turns True between slices.
    """
    from micro_sam.multi_dimensional_segmentation import merge_instance_segmentation_3d

    from ..annotation.automatic import automatic_segmentation
    from ..instance.segmentation import instance_segmentation

    n_slices = features.n_slices
    segmentation: np.ndarray | None = None
    offset = 0
    for z in range(n_slices):
        if should_stop is not None and should_stop():
            raise StoppedError("Automatic segmentation stopped; nothing was changed.")
        image = volume_slice(volume, z)
        embeddings = features.slice_embeddings(z)
        if decoder is not None:
            labels = instance_segmentation(predictor, decoder, image, embeddings, min_object_size=min_object_size)
        else:
            labels = automatic_segmentation(
                predictor,
                image,
                embeddings,
                points_per_side=points_per_side,
                object_size=object_size,
                autocast=autocast,
                min_object_size=min_object_size,
            )
        if segmentation is None:
            segmentation = np.zeros((n_slices, *labels.shape), dtype=np.uint32)
        found = int(labels.max())
        if found:
            segmentation[z] = np.where(labels > 0, labels + offset, 0)
            offset += found
        if progress is not None:
            progress(z + 1, n_slices)
    assert segmentation is not None
    if offset == 0:
        return segmentation
    merged = merge_instance_segmentation_3d(
        segmentation,
        beta=0.5,
        with_background=True,
        gap_closing=gap_closing,
        min_z_extent=min_z_extent,
        verbose=False,
    )
    return np.asarray(merged, dtype=np.uint32)
