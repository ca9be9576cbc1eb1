"""Automatic segmentation to pre-annotate an image, with micro_sam's mask generators.

The point grid is sized to the image and to the objects the user has annotated (:func:`grid_size`): a
point every 8 pixels at the finest, two points across a typical object, never more than micro_sam's
32 x 32 (16 x 16 for a small model's input). A 61 x 57 slice gets an 8 x 8 grid, not 32 x 32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from ..sam.preprocessing import input_size
from .progress import MicroSamProgress, ProgressCallback

#: the finest grid spacing (image pixels): objects smaller than this are below the minimum object size
MIN_GRID_SPACING = 8
#: grid points across a typical object (SAM needs one point inside each object: two make it robust)
POINTS_ACROSS_OBJECT = 2
#: the coarsest grid, points per side
MIN_POINTS_PER_SIDE = 4


def default_points_per_side(predictor: Any) -> int:
    """micro_sam's grid for SAM-sized inputs (32 points per side); small models see a proportionally
    smaller image (16)."""
    return 32 if input_size(predictor.model) >= 1024 else 16


def typical_object_size(bboxes: Sequence[Sequence[int]]) -> float | None:
    """The median side (geometric mean of height and width, pixels) of objects' in-plane bounding boxes
    (``row0, col0, row1, col1``, or a volume's ``z0, row0, col0, z1, row1, col1``); None without objects."""
    sides = []
    for box in bboxes:
        half = len(box) // 2
        (row0, col0), (row1, col1) = box[:half][-2:], box[half:][-2:]  # the last two axes: rows, columns
        height, width = row1 - row0, col1 - col0
        sides.append(math.sqrt(max(height, 1) * max(width, 1)))
    return float(np.median(sides)) if sides else None


def grid_size(image_shape: Sequence[int], most: int, object_size: float | None = None) -> int:
    """Points per side of the grid for an image of ``image_shape`` (H, W, ...): one point every
    :data:`MIN_GRID_SPACING` pixels, or :data:`POINTS_ACROSS_OBJECT` across a typical object of
    ``object_size`` pixels where that is coarser; between :data:`MIN_POINTS_PER_SIDE` and ``most``."""
    spacing = float(MIN_GRID_SPACING)
    if object_size is not None:
        spacing = max(spacing, object_size / POINTS_ACROSS_OBJECT)
    wanted = math.ceil(max(image_shape[:2]) / spacing)
    return int(min(max(wanted, MIN_POINTS_PER_SIDE), most))


def automatic_segmentation(
    predictor: Any,
    image: np.ndarray,
    embeddings: dict,
    *,
    tile_shape: tuple[int, int] | None = None,
    halo: tuple[int, int] | None = None,
    points_per_side: int | None = None,
    object_size: float | None = None,
    pred_iou_thresh: float = 0.8,
    stability_score_thresh: float = 0.9,
    min_object_size: int = 25,
    autocast: Callable[[], AbstractContextManager] | None = None,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """An instance segmentation (uint32 labels, 0 = background, shape (H, W)) of the whole image.

    ``image`` is greyscale (H, W) or RGB (H, W, 3), as checked by ``check_image``.

    ``points_per_side`` (None: :func:`grid_size` for the image and ``object_size``, the typical annotated
    object's side in pixels). Uses the already computed ``embeddings`` with micro_sam's
    ``TiledAutomaticMaskGenerator`` for tiled embeddings, else ``internals.filtered_mask_generator``
    (micro_sam's, decoding in the context ``autocast`` makes, a precision's ``autocast`` method, and
    dropping the masks below ``pred_iou_thresh`` before it upscales them).
    """
    from micro_sam.instance_segmentation import TiledAutomaticMaskGenerator

    from ..sam.internals import filtered_mask_generator

    if points_per_side is None:
        points_per_side = grid_size(image.shape, default_points_per_side(predictor), object_size)
    bar = MicroSamProgress(progress)
    generator: Any
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
        generator = filtered_mask_generator(predictor, pred_iou_thresh, points_per_side, autocast)
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
