"""Instances from the decoder's predictions: micro_sam's ``InstanceSegmentationWithDecoder``."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from ..annotation.progress import MicroSamProgress, ProgressCallback


def instance_segmentation(
    predictor: Any,
    decoder: nn.Module,
    image: np.ndarray,
    embeddings: dict,
    *,
    tile_shape: tuple[int, int] | None = None,
    halo: tuple[int, int] | None = None,
    min_object_size: int = 25,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """An instance segmentation (uint32 labels, 0 = background, shape (H, W)) of the whole image.

    ``embeddings`` are micro_sam's for ``image`` with ``predictor`` (tiled when ``tile_shape`` is
    given); the decoder reads them, and micro_sam's seeded watershed on its foreground, centre and
    boundary distance maps makes the instances (its defaults: every threshold 0.5).
    """
    from micro_sam.instance_segmentation import (
        InstanceSegmentationWithDecoder,
        TiledInstanceSegmentationWithDecoder,
    )

    bar = MicroSamProgress(progress)
    if tile_shape is not None:
        segmenter = TiledInstanceSegmentationWithDecoder(predictor, decoder)
        segmenter.initialize(image, image_embeddings=embeddings, tile_shape=tile_shape, halo=halo, **bar.callbacks)
    else:
        segmenter = InstanceSegmentationWithDecoder(predictor, decoder)
        segmenter.initialize(image, image_embeddings=embeddings, **bar.callbacks)
    segmentation = segmenter.generate(min_size=min_object_size, output_mode="instance_segmentation")
    if isinstance(segmentation, list):  # nothing found
        return np.zeros(image.shape[:2], dtype=np.uint32)
    return np.asarray(segmentation, dtype=np.uint32)
