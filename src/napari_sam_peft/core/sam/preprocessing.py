"""A model's input: an image as the tensor its encoder takes, and the sizes training needs.

Each encoder family preprocesses in its own way (``EncoderFamily.model_input``); these functions
find the family of the model they are given.
"""

from __future__ import annotations

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import nn

from .registry import family_of, image_encoder_of, is_sam1_model


def model_input(sam: nn.Module, image: np.ndarray) -> torch.Tensor:
    """An image, greyscale (H, W) or RGB (H, W, 3), as the model's normalised, resized, padded input.

    For SAM's ViT the same preprocessing as the annotator's embeddings (micro_sam's, then what
    ``SamPredictor.set_image`` does), so training sees what annotating saw.
    """
    return family_of(sam).model_input(sam, image)


def input_size(sam: nn.Module) -> int:
    """Side length of the square input the model's encoder takes (1024 for SAM, 256 for the demo)."""
    return family_of(sam).input_size(image_encoder_of(sam))


def embedding_side(sam: Sam) -> int:
    """Side length of the image embedding grid the mask decoder reads (64 for SAM)."""
    return int(sam.prompt_encoder.image_embedding_size[0])


def embedding_channels(sam: nn.Module) -> int:
    """Channels of the embedding the model's encoder hands the decoder: the prompt encoder's width for
    SAM (256), four times that for SAM 2.1, whose embedding packs its high-resolution maps (``sam2_as_sam``)."""
    width = int(sam.prompt_encoder.embed_dim)  # type: ignore[union-attr, arg-type]
    return width if is_sam1_model(sam) else 4 * width
