"""The paper's interactive evaluation: mSA for Point, Box, I_P and I_B.

For each ground-truth object, start from one positive point (the interior point farthest
from the border) or from its box, then run ``n_iterations`` corrections, each adding one
positive point in the largest missed region and one negative point in the largest
spurious region (as in micro_sam's evaluation, the previous logits are fed back as a mask
prompt only with ``use_masks=True``). The objects of
an image are assembled into an instance segmentation after the first prompt (Point, Box)
and after the last correction (I_P, I_B), and scored with the mean segmentation accuracy
(``elf.evaluation.mean_segmentation_accuracy``: mean over IoU thresholds 0.50..0.95 of
TP / (TP + FP + FN)).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from .report import METRICS


def farthest_interior_point(region: np.ndarray) -> tuple[int, int] | None:
    """(row, col) of the pixel deepest inside the largest connected part of ``region``."""
    if not region.any():
        return None
    components, n = ndimage.label(region)
    if n > 1:
        sizes = ndimage.sum(region, components, range(1, n + 1))
        region = components == (int(np.argmax(sizes)) + 1)
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(row), int(col)


def predict_mask(
    predictor: Any,
    points: Sequence[Sequence[int]],
    labels: Sequence[int],
    box: Sequence[float] | None,
    mask_input: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """One mask from (row, col) points with labels and/or an (x0, y0, x1, y1) box; also its logits.

    ``predictor`` is a ``SamPredictor`` with the image set; ``mask_input`` is previous low-resolution
    logits (or None). Returns the boolean mask and its (1, 256, 256) logits.
    """
    kwargs: dict[str, Any] = {"multimask_output": False, "return_logits": True}
    if len(points):
        kwargs["point_coords"] = np.asarray(points, dtype=float)[:, ::-1]  # SAM wants (x, y)
        kwargs["point_labels"] = np.asarray(labels)
    if box is not None:
        kwargs["box"] = np.asarray(box, dtype=float)
    if mask_input is not None:
        kwargs["mask_input"] = mask_input
    if len(points) == 1 and box is None and mask_input is None:
        # A single positive point is ambiguous: take the best of SAM's three masks (as micro_sam does).
        kwargs["multimask_output"] = True
    masks, scores, low_res = predictor.predict(**kwargs)
    best = int(np.argmax(scores)) if kwargs["multimask_output"] else 0
    return masks[best] > predictor.model.mask_threshold, low_res[best : best + 1]


def segment_object_iteratively(
    predictor: Any, gt: np.ndarray, start: str, n_iterations: int, use_masks: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Masks after the first prompt and after the last correction, for one object.

    ``start`` is "point" (the interior point farthest from the border) or "box"; ``gt`` is the
    object's boolean mask.
    """
    rows, cols = np.nonzero(gt)
    points: list[tuple[int, int]] = []
    labels: list[int] = []
    box = None
    if start == "box":
        box = [cols.min(), rows.min(), cols.max(), rows.max()]
    else:
        centre = farthest_interior_point(gt)
        assert centre is not None, "an object has pixels"
        points, labels = [centre], [1]
    mask, logits = predict_mask(predictor, points, labels, box, None)
    first = mask
    for _ in range(n_iterations):
        positive = farthest_interior_point(gt & ~mask)
        negative = farthest_interior_point(mask & ~gt)
        if positive is None and negative is None:
            break
        for point, label in ((positive, 1), (negative, 0)):
            if point is not None:
                points.append(point)
                labels.append(label)
        mask, logits = predict_mask(predictor, points, labels, box, logits if use_masks else None)
    return first, mask


def _assemble(masks: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint32)
    for index, mask in enumerate(masks, start=1):
        labels[mask] = index
    return labels


def evaluate_interactive(
    predictor: Any,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    n_iterations: int = 8,
    use_masks: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Point, Box, I_P and I_B mSA (0..1) over (image, instance labels) pairs, and the object count.

    Images are 2D, greyscale (H, W) or RGB (H, W, 3); labels are (H, W).

    ``predictor`` is a ``SamPredictor`` carrying the model (and adapter) to evaluate.
    """
    from elf.evaluation import mean_segmentation_accuracy
    from micro_sam.util import precompute_image_embeddings, set_precomputed

    samples = list(samples)
    scores: dict[str, list[float]] = {m: [] for m in METRICS}
    n_objects = 0
    for index, (image, gt_labels) in enumerate(samples):
        # ndim=2: an RGB image (H, W, 3) is one colour image, not a stack of H planes
        embeddings = precompute_image_embeddings(predictor, image, ndim=2, verbose=False)
        set_precomputed(predictor, embeddings)
        ids = [i for i in np.unique(gt_labels) if i != 0]
        n_objects += len(ids)
        results: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
        for obj in ids:
            gt = gt_labels == obj
            first, last = segment_object_iteratively(predictor, gt, "point", n_iterations, use_masks)
            results["point"].append(first)
            results["i_p"].append(last)
            first, last = segment_object_iteratively(predictor, gt, "box", n_iterations, use_masks)
            results["box"].append(first)
            results["i_b"].append(last)
        for metric in METRICS:
            prediction = _assemble(results[metric], gt_labels.shape)
            scores[metric].append(float(mean_segmentation_accuracy(prediction, gt_labels)))
        if progress:
            progress(index + 1, len(samples))
    summary = {m: float(np.mean(v)) if v else 0.0 for m, v in scores.items()}
    summary["n_objects"] = n_objects
    return summary
