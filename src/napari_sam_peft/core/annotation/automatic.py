"""Automatic segmentation to pre-annotate an image, with micro_sam's mask generators."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..sam.preprocessing import input_size
from .progress import MicroSamProgress, ProgressCallback


def automatic_segmentation(
    predictor: Any,
    image: np.ndarray,
    embeddings: dict,
    *,
    tile_shape: tuple[int, int] | None = None,
    halo: tuple[int, int] | None = None,
    points_per_side: int | None = None,
    pred_iou_thresh: float = 0.8,
    stability_score_thresh: float = 0.9,
    min_object_size: int = 25,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """An instance segmentation (uint32 labels, 0 = background, shape (H, W)) of the whole image.

    ``image`` is greyscale (H, W) or RGB (H, W, 3), as checked by ``check_image``.

    ``points_per_side`` defaults to 32 for SAM-sized models and 16 for small ones.
    Uses micro_sam's ``AutomaticMaskGenerator`` (``TiledAutomaticMaskGenerator`` for tiled
    embeddings) with the already computed ``embeddings``.
    """
    from micro_sam.instance_segmentation import AutomaticMaskGenerator, TiledAutomaticMaskGenerator

    if points_per_side is None:
        # A 32 x 32 grid for SAM-sized inputs; small models see a proportionally smaller image.
        points_per_side = 32 if input_size(predictor.model) >= 1024 else 16
    bar = MicroSamProgress(progress)
    if tile_shape is not None:
        generator = TiledAutomaticMaskGenerator(predictor, points_per_side=points_per_side)
        generator.initialize(
            image,
            image_embeddings=embeddings,
            tile_shape=tile_shape,
            halo=halo,
            **bar.callbacks,
        )
    else:
        generator = AutomaticMaskGenerator(predictor, points_per_side=points_per_side)
        generator.initialize(image, image_embeddings=embeddings, **bar.callbacks)
    segmentation = generator.generate(
        pred_iou_thresh=pred_iou_thresh,
        stability_score_thresh=stability_score_thresh,
        min_mask_region_area=min_object_size,
        output_mode="instance_segmentation",
        with_background=True,
    )
    if isinstance(segmentation, list):  # no mask passed the filters
        return np.zeros(image.shape[:2], dtype=np.uint32)
    return np.asarray(segmentation, dtype=np.uint32)
