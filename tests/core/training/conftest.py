"""Shared by the training tests: a small store of two sample images and a short training job on it."""

from __future__ import annotations

import pytest

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.training.job import TrainingJob


@pytest.fixture
def store(tmp_path):
    store = AnnotationStore.create(tmp_path / "cells.sampeft.zarr")
    for seed, split in ((1, "train"), (2, "val")):
        sample = make_sample("cells", seed=seed)
        store.add_labels(sample.image, sample.labels, split=split)
    return store


def _job(store, **overrides) -> TrainingJob:
    values = dict(
        store=store.path,
        model="demo",
        preset="late_lora",
        blocks="last 1",
        steps=4,
        validate_every=2,
        objects_per_image=4,
    )
    values.update(overrides)
    return TrainingJob(**values)
