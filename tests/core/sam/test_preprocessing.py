"""A model's input: any greyscale or RGB image becomes the encoder's normalised square input."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.sam.architecture import DEMO, TINY, build_sam
from napari_sam_peft.core.sam.preprocessing import embedding_side, input_size, model_input


@pytest.mark.parametrize("shape", [(64, 64), (40, 64), (64, 64, 3), (128, 96)])
def test_any_image_becomes_one_square_input_of_the_encoders_size(tiny_sam, shape):
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    x = model_input(tiny_sam, image)
    assert tuple(x.shape) == (1, 3, TINY.img_size, TINY.img_size)
    assert abs(float(x.mean())) < 3  # normalised, not raw 0..255 pixel values


@pytest.mark.parametrize(("architecture", "size", "side"), [(TINY, 64, 8), (DEMO, 256, 32)])
def test_input_and_embedding_sizes_follow_the_architecture(architecture, size, side):
    sam = build_sam(architecture, device="meta")
    assert (input_size(sam), embedding_side(sam)) == (size, side)
