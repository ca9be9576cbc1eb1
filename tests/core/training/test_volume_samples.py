"""Training on volumes: 2D slices that hold objects, and validation held out by z-range, never slice by slice."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.sample_volume import make_volume
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.training.run import load_training_data
from napari_sam_peft.core.volume.store_slices import count_slices, read_samples, slices_with_objects

VOLUME = make_volume(seed=0, shape=(16, 96, 96))


def test_a_volume_trains_on_its_slices_that_hold_objects(tmp_path):
    store = AnnotationStore.create(tmp_path / "v.sampeft.zarr")
    store.add_labels(VOLUME.image, VOLUME.labels, split="train")
    image = make_sample("cells", seed=0, shape=(64, 64))
    store.add_labels(image.image, image.labels, split="train")
    stored = list(store.snapshot().images)
    samples, origins = read_samples(store, stored)
    with_objects = slices_with_objects(VOLUME.labels)
    assert 0 < len(with_objects) < VOLUME.labels.shape[0]  # the sample has empty slices, which are skipped
    assert len(samples) == len(with_objects) + 1 == count_slices(stored)
    volume_samples = [(sample, o.z) for sample, o in zip(samples, origins, strict=True) if o.z is not None]
    for (image_2d, labels_2d), z in volume_samples:
        np.testing.assert_array_equal(image_2d, VOLUME.image[z])
        np.testing.assert_array_equal(labels_2d > 0, VOLUME.labels[z] > 0)
    assert [o.z for o in origins if o.z is not None] == with_objects
    # what the Finetune widget recommends steps for: the objects as the run's samples count them
    per_slice = sum(len(np.unique(labels)) - 1 for _, labels in samples)
    assert store.info()["train_sample_objects"] == per_slice


def test_without_a_validation_split_a_volume_holds_out_its_top_z_range_and_says_so(tmp_path):
    store = AnnotationStore.create(tmp_path / "v.sampeft.zarr")
    image_id, _ = store.add_labels(VOLUME.image, VOLUME.labels, split="train")
    data = load_training_data(store.path, seed=0)
    with_objects = slices_with_objects(VOLUME.labels)
    held = data.validation["held_out_slices"][image_id]
    assert held[1] == with_objects[-1] and held[0] > with_objects[0]  # one contiguous top range
    assert "held out automatically by z-range" in data.plan.description
    assert "an object that crosses the boundary is on both sides" in data.plan.description
    assert len(data.plan.train) + len(data.plan.val) == len(with_objects)
    assert data.validation["held_out_images"] == [image_id]
    assert data.plan.counts()["val_images"] == round(len(with_objects) * 0.2)
    # the 3D scores are measured on the held-out z-range, as a volume of its own
    (pixels, labels), *others = data.volumes
    assert not others and pixels.shape == labels.shape == (held[1] - held[0] + 1, 96, 96)
    np.testing.assert_array_equal(pixels, VOLUME.image[held[0] : held[1] + 1])
    np.testing.assert_array_equal(labels > 0, VOLUME.labels[held[0] : held[1] + 1] > 0)


def test_a_volume_in_the_validation_split_keeps_all_its_slices_there(tmp_path):
    store = AnnotationStore.create(tmp_path / "v.sampeft.zarr")
    store.add_labels(VOLUME.image, VOLUME.labels, split="val")
    other = make_volume(seed=1, shape=(16, 96, 96))
    store.add_labels(other.image, other.labels, split="train")
    data = load_training_data(store.path, seed=0)
    assert data.plan.validation == "validation split"
    assert len(data.plan.val) == len(slices_with_objects(VOLUME.labels))
    assert len(data.plan.train) == len(slices_with_objects(other.labels))
    (pixels, labels), *others = data.volumes  # the whole validation volume is scored in 3D
    assert not others and np.shape(pixels) == labels.shape == VOLUME.labels.shape


def test_2d_images_have_no_volumes_to_score_in_3d(tmp_path):
    store = AnnotationStore.create(tmp_path / "v.sampeft.zarr")
    for seed, split in ((0, "train"), (1, "val")):
        image = make_sample("cells", seed=seed, shape=(64, 64))
        store.add_labels(image.image, image.labels, split=split)
    assert load_training_data(store.path, seed=0).volumes == []


@pytest.mark.slow  # a run of the demo model
def test_a_run_on_a_volume_says_which_slices_it_held_out(tmp_path):
    from napari_sam_peft.core.training.events import Started
    from napari_sam_peft.core.training.run import run_job
    from tests.core.training.conftest import _job

    store = AnnotationStore.create(tmp_path / "v.sampeft.zarr")
    image_id, _ = store.add_labels(VOLUME.image, VOLUME.labels, split="train")
    events = []
    job = _job(store, steps=2, validate_every=2, out=tmp_path / "a.safetensors", evaluate=True, with_decoder=True)
    record = run_job(job, events.append)
    started = next(e for e in events if isinstance(e, Started))
    assert started.held_out_slices[image_id][1] == slices_with_objects(VOLUME.labels)[-1]
    assert "by z-range" in started.measured_on and record.validation["held_out_slices"] == started.held_out_slices
    # the end-of-run evaluation (the Finetune widget's table) has the 3D scores on the held-out z-range
    metrics = [row.metric for row in record.evaluation.rows()]
    assert metrics[-3:] == ["AIS", "3D", "3D AIS"]
    assert all(0 <= record.evaluation.adapter[key] <= 1 for key in ("volume", "volume_ais"))
