"""Grouping points and boxes into objects, and the errors for prompts that cannot be segmented."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.annotation.prompting import (
    AmbiguousPromptsError,
    NoPromptsError,
    ObjectPrompts,
    box_from_corners,
    segment_object,
    segment_objects,
    split_into_objects,
)


def test_batch_mode_makes_one_object_per_box_and_per_positive_point():
    from napari_sam_peft.core.annotation.prompting import split_into_objects

    boxes = [np.array([0, 0, 10, 10])]
    objects = split_into_objects([[5, 5], [20, 20], [30, 30]], [1, 1, 0], boxes, batch=True)
    assert len(objects) == 3
    assert objects[0].box is not None
    assert objects[1].labels.tolist() == [1, 0] and objects[2].labels.tolist() == [1, 0]
    single = split_into_objects([[5, 5], [30, 30]], [1, 0], boxes, batch=False)
    assert len(single) == 1 and single[0].box is not None and len(single[0].points) == 2


def test_several_boxes_with_points_in_single_mode_are_refused_with_what_to_do():
    boxes = [np.array([0, 0, 10, 10]), np.array([20, 20, 30, 30])]
    with pytest.raises(AmbiguousPromptsError, match="2 boxes and 1 point.*batch mode"):
        split_into_objects([[5, 5]], [1], boxes, batch=False)
    assert len(split_into_objects([], [], boxes, batch=False)) == 2


def test_a_napari_rectangle_becomes_a_min_max_box():
    corners = np.array([[8, 2], [8, 9], [3, 9], [3, 2]])
    assert box_from_corners(corners).tolist() == [3, 2, 8, 9]


@pytest.mark.parametrize(
    "call",
    [
        lambda: segment_object(None, {}, ObjectPrompts(points=np.array([[5.0, 5.0]]), labels=np.array([0]))),
        lambda: segment_objects(None, {}, []),
    ],
    ids=["only-negative-points", "no-objects"],
)
def test_nothing_to_segment_says_to_place_prompts(call):
    with pytest.raises(NoPromptsError, match="nothing to segment"):
        call()
