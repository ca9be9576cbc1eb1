"""Each training image's kept block input: features equal the whole encoder, the cache is reused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam_peft.core.annotation.stage_inputs import StageInputs
from napari_sam_peft.core.sam.preprocessing import model_input
from napari_sam_peft.core.sam.stages import stage_count

IMAGES = [np.random.default_rng(i).integers(0, 255, (64, 64), dtype=np.uint8) for i in range(2)]


@pytest.mark.parametrize("stage", [0, 3, None])
def test_features_from_the_kept_input_equal_the_whole_encoder(tiny_sam, stage):
    stage = stage_count(tiny_sam) if stage is None else stage
    inputs = StageInputs(tiny_sam, IMAGES, stage)
    assert len(inputs) == 2 and inputs.computed == 2
    with torch.no_grad():
        for index, image in enumerate(IMAGES):
            expected = tiny_sam.image_encoder(model_input(tiny_sam, image))
            torch.testing.assert_close(inputs.features(index), expected, rtol=1e-5, atol=1e-5)


class _Source:
    def __init__(self):
        self.kept: dict[bytes, torch.Tensor] = {}

    def get(self, image):
        return self.kept.get(image.tobytes())

    def put(self, image, features):
        self.kept[image.tobytes()] = features


def test_a_frozen_encoder_takes_embeddings_from_the_source_and_adds_the_missing_ones(tiny_sam):
    source = _Source()
    first = StageInputs(tiny_sam, IMAGES[:1], stage_count(tiny_sam), source)
    assert (first.computed, first.reused, len(source.kept)) == (1, 0, 1)
    second = StageInputs(tiny_sam, IMAGES, stage_count(tiny_sam), source)
    assert (second.computed, second.reused, len(source.kept)) == (1, 1, 2)
