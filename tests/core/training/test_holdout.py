"""Holding out validation data when the store has no validation split."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.data.sample_data import make_series
from napari_sam_peft.core.training.holdout import (
    HELD_OUT,
    TRAINING_DATA,
    VALIDATION_SPLIT,
    hold_out_count,
    object_ids,
    plan_validation,
)


def _samples(n: int):
    return [(s.image, s.labels) for s in make_series("cells", n, shape=(128, 128))]


@pytest.mark.parametrize(
    ("n", "held"), [(0, 0), (1, 0), (2, 1), (3, 1), (5, 1), (8, 2), (10, 2), (13, 3), (100, 20)]
)
def test_about_a_fifth_is_held_out_at_least_one_never_all(n, held):
    assert hold_out_count(n) == held


def test_a_validation_split_is_used_as_it_is():
    train, val = _samples(3), _samples(1)
    plan = plan_validation(train, val, seed=0)
    assert plan.validation == VALIDATION_SPLIT and not plan.on_training_data
    assert plan.train == train and plan.val == val
    assert "validation split" in plan.description and plan.summary()["val_images"] == 1


def test_whole_training_images_are_held_out_deterministically():
    train = _samples(5)
    plan = plan_validation(train, [], seed=3)
    assert plan.validation == HELD_OUT
    assert plan.description == (
        "held out automatically: 1 of 5 training images (no validation split in the store)"
    )
    assert len(plan.held_out_images) == 1 and len(plan.train) == 4
    held = {id(train[i][0]) for i in plan.held_out_images}
    assert {id(image) for image, _ in plan.val} == held
    assert not held & {id(image) for image, _ in plan.train}
    assert plan_validation(train, [], seed=3).held_out_images == plan.held_out_images
    chosen = {tuple(plan_validation(train, [], seed=seed).held_out_images) for seed in range(20)}
    assert len(chosen) > 1  # the seed decides


def test_objects_of_a_single_image_are_held_out_disjointly():
    image, labels = _samples(1)[0]
    ids = object_ids(labels)
    assert len(ids) >= 5
    plan = plan_validation([(image, labels)], [], seed=0)
    assert plan.validation == HELD_OUT and "objects of the only training image" in plan.description
    ((train_image, train_labels),), ((val_image, val_labels),) = plan.train, plan.val
    assert train_image is image and val_image is image
    held, kept = set(object_ids(val_labels)), set(object_ids(train_labels))
    assert held == {value for _, value in plan.held_out_objects} and len(held) == hold_out_count(len(ids))
    assert not held & kept and held | kept == set(ids)
    for value in ids:  # each object keeps its pixels, on exactly one side
        side = val_labels if value in held else train_labels
        np.testing.assert_array_equal(side == value, labels == value)
    assert plan.summary()["val_objects"] == len(held) and plan.summary()["train_objects"] == len(kept)


def test_with_few_images_objects_are_held_out_and_every_image_still_trains():
    train = _samples(3)
    plan = plan_validation(train, [], seed=0)
    total = sum(len(object_ids(labels)) for _, labels in train)
    assert plan.validation == HELD_OUT and "objects of 3 training images" in plan.description
    assert len(plan.train) == 3 and len(plan.held_out_objects) == hold_out_count(total)
    for index, (image, labels) in enumerate(train):
        held = {value for i, value in plan.held_out_objects if i == index}
        (kept,) = [lab for img, lab in plan.train if img is image]
        assert set(object_ids(kept)) == set(object_ids(labels)) - held
    assert plan.summary()["val_objects"] == len(plan.held_out_objects)


def test_a_single_object_cannot_be_held_out_and_says_so():
    labels = np.zeros((32, 32), np.uint16)
    labels[4:10, 4:10] = 1
    image = np.zeros((32, 32), np.uint8)
    plan = plan_validation([(image, labels)], [], seed=0)
    assert plan.validation == TRAINING_DATA and plan.on_training_data
    assert plan.description.startswith("training data:") and "nothing could be held out" in plan.description
    assert plan.train == plan.val
