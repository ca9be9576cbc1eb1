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

Everything after the decoder is micro_sam's (stability, boxes, NMS, the instance segmentation).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from micro_sam.instance_segmentation import AutomaticMaskGenerator

#: points decoded at once on a CPU (micro_sam: 64; 256 measured fastest for LiteMedSAM on 2 cores)
CPU_POINTS_PER_BATCH = 256


class FilteredMaskGenerator(AutomaticMaskGenerator):
    """An ``AutomaticMaskGenerator`` that keeps only the masks ``generate(pred_iou_thresh=...)`` would keep.

    ``pred_iou_thresh`` must be the value later given to ``generate``; ``autocast`` makes the context the
    decoder runs in (a precision's ``autocast`` method; None: float32).
    """

    def __init__(
        self,
        predictor: Any,
        pred_iou_thresh: float,
        points_per_side: int,
        autocast: Callable[[], AbstractContextManager] | None = None,
        points_per_batch: int | None = None,
    ) -> None:
        if points_per_batch is None and str(predictor.device) == "cpu":
            points_per_batch = CPU_POINTS_PER_BATCH
        super().__init__(predictor, points_per_side=points_per_side, points_per_batch=points_per_batch)
        self._keep_iou = pred_iou_thresh
        self._autocast = autocast

    def _process_batch(self, points: np.ndarray, im_size: Any, crop_box: Any, original_size: Any) -> Any:
        predictor = self._predictor
        model = predictor.model
        coords = torch.as_tensor(
            predictor.transform.apply_coords(points, im_size), device=predictor.device, dtype=torch.float
        )[:, None, :]
        labels = torch.ones(coords.shape[:2], dtype=torch.int, device=coords.device)
        with torch.no_grad(), self._autocast() if self._autocast is not None else nullcontext():
            sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            low_res, iou = model.mask_decoder(
                image_embeddings=predictor.features,
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )
        keep = iou.float() > self._keep_iou  # (points, 3): what generate() would keep
        kept_points = np.repeat(points, iou.shape[1], axis=0)[keep.flatten().cpu().numpy()]
        masks = model.postprocess_masks(
            low_res[keep][:, None].float(), predictor.input_size, predictor.original_size
        )
        return self._to_mask_data(masks, iou[keep][:, None].float(), crop_box, original_size, points=kept_points)
