"""Volumes in the store: 3D labels and objects with their prompt's slice, written slice by slice."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.data.sample_volume import make_volume
from napari_sam_peft.core.data.store import AnnotationStore, StoreError, image_id_for
from tests.core.volume.test_volumes import CountingReads

VOLUME = make_volume(seed=1, shape=(10, 96, 96))


@pytest.fixture
def store(tmp_path):
    return AnnotationStore.create(tmp_path / "volumes.sampeft.zarr")


def test_a_volume_with_3d_labels_comes_back_identical_and_says_it_is_a_volume(store):
    image_id, object_ids = store.add_labels(VOLUME.image, VOLUME.labels, name="nuclei 3d", split="train")
    snapshot = store.snapshot()
    (stored,) = snapshot.images
    assert stored.volume and stored.labels_shape == VOLUME.labels.shape
    assert len(object_ids) == len(stored.objects) == int(VOLUME.labels.max())
    np.testing.assert_array_equal(store.image(image_id), VOLUME.image)
    np.testing.assert_array_equal(store.labels(stored), VOLUME.labels)
    assert len(stored.objects[0].bbox) == 6  # z0, row0, col0, z1, row1, col1
    assert snapshot.info()["volumes"] == 1
    assert store.lazy_image(image_id)[3].shape == (96, 96)


def test_an_object_committed_in_3d_keeps_its_prompt_and_the_slice_it_was_on(store):
    image_id = store.add_image(VOLUME.image, volume=True)
    mask = VOLUME.labels == 1
    prompts = {"box": [1, 2, 30, 40], "slice": 4, "propagated": [2, 7]}
    object_id = store.add_object(image_id, mask, prompts=prompts)
    (obj,) = store.snapshot().images[0].objects
    assert obj.object_id == object_id and obj.prompts == prompts
    np.testing.assert_array_equal(store.object_mask(obj, VOLUME.labels.shape), mask)


def test_a_volume_is_read_and_written_one_slice_at_a_time(store):
    lazy = CountingReads(VOLUME.image)  # loading it whole raises
    image_id = store.add_image(lazy, volume=True)
    assert image_id == image_id_for(VOLUME.image)  # the same id as the array in memory
    assert store.snapshot().images[0].shape == VOLUME.image.shape
    np.testing.assert_array_equal(store.lazy_image(image_id)[...], VOLUME.image)


@pytest.mark.parametrize(
    ("image", "labels", "message"),
    [
        (VOLUME.image, VOLUME.labels[:, :32], r"shape \(10, 32, 96\) but the volume is \(10, 96, 96\)"),
        (np.zeros((2, 10, 96, 96)), np.zeros((2, 96, 96), int), "time series of volumes"),
        (VOLUME.image[:1], VOLUME.labels[:1], "fewer than 2 slices"),
    ],
)
def test_bad_volumes_are_one_line_and_the_store_is_unchanged(store, image, labels, message):
    with pytest.raises(StoreError, match=message) as error:
        store.add_labels(image, labels)
    assert "\n" not in str(error.value)
    assert store.snapshot().images == ()


def test_a_2d_mask_on_a_volume_is_refused(store):
    image_id = store.add_image(VOLUME.image, volume=True)
    with pytest.raises(StoreError, match=r"shape \(96, 96\) but the volume is \(10, 96, 96\)"):
        store.add_object(image_id, VOLUME.labels[3] == 1)
