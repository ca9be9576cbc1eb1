"""Shared by the data tests: an empty store, a small sample, and a store's file listing."""

from __future__ import annotations

import pytest

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore

SAMPLE = make_sample("cells", seed=0, shape=(64, 64))


@pytest.fixture
def store(tmp_path):
    return AnnotationStore.create(tmp_path / "project.sampeft.zarr")


def _files(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))
