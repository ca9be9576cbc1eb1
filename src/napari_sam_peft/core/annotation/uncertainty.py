"""How unsure the model is on an image, to suggest which image to annotate next (active learning).

SAM's own confidence signals, on a grid of single-point prompts: the mask decoder's predicted IoU
of its best mask, and the mask's stability (SAM's stability score: the IoU of the mask thresholded
at logit +1 and at -1). An image where both are high is one the model segments confidently; the
lower their product, the more a correction there teaches the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: SAM's offset for the stability score (``segment_anything``'s automatic mask generator)
STABILITY_OFFSET = 1.0


@dataclass(frozen=True)
class Uncertainty:
    """How unsure the model is on one image: 0 (confident) .. 1, with the signals behind it."""

    score: float
    predicted_iou: float  # mean over the grid points of the best mask's predicted IoU
    stability: float  # mean stability of those masks
    points: int

    def why(self) -> str:
        """One line a user reads next to the suggestion."""
        return (
            f"predicted IoU {self.predicted_iou:.2f}, stability {self.stability:.2f} "
            f"over {self.points} point prompts"
        )


def _stability(logits: np.ndarray) -> float:
    high, low = logits > STABILITY_OFFSET, logits > -STABILITY_OFFSET
    union = low.sum()
    return float(high.sum() / union) if union else 0.0


def image_uncertainty(
    predictor: Any, embeddings: dict, image_shape: tuple[int, ...], points_per_side: int = 4
) -> Uncertainty:
    """The model's uncertainty on one image from its embeddings (micro_sam's dict; tiled: the first tile).

    One decoder pass per grid point (``points_per_side`` squared points, centred in their cells).
    """
    from micro_sam.util import set_precomputed

    tiled = embeddings.get("input_size") is None  # micro_sam keeps the sizes per tile
    set_precomputed(predictor, embeddings, tile_id=0 if tiled else None)
    height, width = predictor.original_size
    rows = (np.arange(points_per_side) + 0.5) * height / points_per_side
    cols = (np.arange(points_per_side) + 0.5) * width / points_per_side
    ious, stabilities = [], []
    for row in rows:
        for col in cols:
            _, scores, logits = predictor.predict(
                point_coords=np.array([[col, row]]), point_labels=np.array([1]), multimask_output=True
            )
            best = int(np.argmax(scores))
            ious.append(float(scores[best]))
            stabilities.append(_stability(logits[best]))
    predicted_iou, stability = float(np.mean(ious)), float(np.mean(stabilities))
    score = float(np.clip(1.0 - predicted_iou * stability, 0.0, 1.0))
    return Uncertainty(score, predicted_iou, stability, len(ious))
