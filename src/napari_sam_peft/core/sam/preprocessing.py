"""SAM's input preprocessing: an image as the normalised, resized, padded tensor the encoder takes."""

from __future__ import annotations

import numpy as np
import torch


def model_input(sam, image: np.ndarray) -> torch.Tensor:
    """An image, greyscale (H, W) or RGB (H, W, 3), as SAM's normalised, resized, padded input tensor.

    The same preprocessing as the annotator's embeddings (micro_sam's ``_to_image``, then what
    ``SamPredictor.set_image`` does), so training sees what annotating saw.
    """
    from micro_sam.util import _to_image
    from segment_anything.utils.transforms import ResizeLongestSide

    rgb = ResizeLongestSide(sam.image_encoder.img_size).apply_image(_to_image(image))
    tensor = torch.as_tensor(rgb, device=sam.device).permute(2, 0, 1)[None].float()
    return sam.preprocess(tensor)
