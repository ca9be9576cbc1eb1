"""Automatic segmentation of a whole image with micro_sam's mask generator (TINY model: mechanics only)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.annotation.automatic import automatic_segmentation
from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.session import AnnotatorSession

IMAGE = make_sample("nuclei", seed=0, shape=(64, 64)).image


@pytest.fixture
def segment(tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(tiny_model)
    _, embeddings = session.embeddings.compute(IMAGE)

    def run(**kwargs):
        return automatic_segmentation(session.model.predictor, IMAGE, embeddings, points_per_side=4, **kwargs)

    return run


def test_the_result_is_a_label_image_of_the_images_shape(segment):
    labels = segment()
    assert labels.shape == (64, 64) and labels.dtype == np.uint32


@pytest.mark.xfail(
    strict=True,
    reason="micro_sam (1.8) calls pbar_init/pbar_update only with verbose=True, which we do not pass: turning it "
    "on made napari's progress widget stall the Qt loop for 160 ms during training (see issue 12's note)",
)
def test_progress_is_reported_up_to_the_total(segment):
    calls: list[tuple[int, int]] = []
    segment(progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]
