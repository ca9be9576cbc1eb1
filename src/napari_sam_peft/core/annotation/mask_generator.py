"""micro_sam's automatic mask generator, made fast on a CPU without changing what it keeps.

micro_sam's ``AutomaticMaskGenerator`` decodes three masks per grid point, upscales every one to the
image's size, scores its stability and run-length encodes it, and only then (in ``generate``) drops
the masks whose predicted IoU is below the threshold. On a CPU the upscaling and encoding of masks
that will be dropped cost more than the decoder (a 32 x 32 grid is 3,072 masks). This generator

- drops the masks below ``pred_iou_thresh`` right after the decoder, at its low resolution (``generate``
  would drop exactly these: the result is the same);
- decodes ``points_per_batch`` points at once (256 on a CPU, micro_sam's 64 elsewhere: fewer, larger
  operations);
- decodes in the session's precision (bfloat16 where the probe found it native and faster).

Everything after the decoder is micro_sam's (stability, boxes, NMS, the instance segmentation). The
subclass touches micro_sam's private names, so it lives in ``core.sam.internals``
(:func:`~napari_sam_peft.core.sam.internals.filtered_mask_generator`); micro_sam is imported on use
(it loads napari).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any


def FilteredMaskGenerator(  # noqa: N802  (a class to its callers, made on use)
    predictor: Any,
    pred_iou_thresh: float,
    points_per_side: int,
    autocast: Callable[[], AbstractContextManager] | None = None,
    points_per_batch: int | None = None,
) -> Any:
    """The fast generator (see the module docstring): ``pred_iou_thresh`` must be the value later given to
    ``generate``; ``autocast`` makes the context the decoder runs in (None: float32)."""
    from ..sam.internals import filtered_mask_generator

    return filtered_mask_generator(predictor, pred_iou_thresh, points_per_side, autocast, points_per_batch)
