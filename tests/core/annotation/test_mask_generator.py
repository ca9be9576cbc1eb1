"""The fast mask generator keeps exactly what micro_sam's keeps, and the grid fits the image and its objects."""

from __future__ import annotations

import numpy as np
import pytest
from micro_sam.instance_segmentation import AutomaticMaskGenerator

from napari_sam_peft.core.annotation.automatic import grid_size, typical_object_size
from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.sam.internals import filtered_mask_generator
from napari_sam_peft.session import AnnotatorSession

IMAGE = make_sample("nuclei", seed=0, shape=(64, 64)).image


@pytest.fixture
def embedded(tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(tiny_model)
    _, embeddings = session.embeddings.compute(IMAGE)
    return session.model.predictor, embeddings


def _generate(generator, embeddings, pred_iou_thresh):
    generator.initialize(IMAGE, image_embeddings=embeddings)
    result = generator.generate(pred_iou_thresh=pred_iou_thresh, stability_score_thresh=0.0)
    return np.zeros(IMAGE.shape, dtype=np.uint32) if isinstance(result, list) else np.asarray(result)


def test_dropping_masks_before_upscaling_keeps_what_micro_sams_generator_keeps(embedded):
    predictor, embeddings = embedded
    results = []
    for threshold in (-10.0, 0.0, 0.05, 0.1, 0.2):  # the random model's predicted IoUs lie around 0
        fast = filtered_mask_generator(predictor, threshold, 8, points_per_batch=7)
        ours = _generate(fast, embeddings, threshold)
        theirs = _generate(AutomaticMaskGenerator(predictor, points_per_side=8), embeddings, threshold)
        np.testing.assert_array_equal(ours, theirs)
        results.append(len(np.unique(ours)))
    assert len(set(results)) > 1, f"every threshold kept the same objects ({results}): the filter went untested"


def test_the_grid_is_sized_to_the_image_and_the_objects():
    assert grid_size((57, 61), most=32) == 8  # a point every 8 pixels, not 32 x 32 on a small slice
    assert grid_size((512, 512), most=32) == 32  # never more than micro_sam's
    assert grid_size((512, 512), most=32, object_size=64) == 16  # two points across a 64-pixel object
    assert grid_size((20, 20), most=32) == 4  # at least 4 x 4
    assert grid_size((512, 512), most=16, object_size=4) == 16  # small objects: the finest grid, capped


def test_the_typical_object_is_the_median_box_side_in_the_image_plane():
    assert typical_object_size([]) is None
    assert typical_object_size([(0, 0, 10, 10), (5, 5, 25, 25), (0, 0, 40, 10)]) == pytest.approx(20)
    assert typical_object_size([(0, 0, 0, 3, 16, 4)]) == pytest.approx(8)  # a volume's (z0, y0, x0, z1, y1, x1)
