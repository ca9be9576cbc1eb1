"""The store's folder: created deep, checked on opening (format, version), refused when read-only."""

from __future__ import annotations

import os
import stat

import pytest
import zarr

from napari_sam_peft.core.data.store import STORE_FORMAT_VERSION, AnnotationStore, StoreError
from napari_sam_peft.core.data.store_folder import StoreFolder
from tests.core.data.conftest import SAMPLE, _files


def test_a_store_from_a_newer_version_is_refused(store):
    before = _files(store.path)
    zarr.open_group(str(store.path), mode="r+").attrs["format_version"] = STORE_FORMAT_VERSION + 1
    with pytest.raises(StoreError, match="newer napari-sam-peft"):
        AnnotationStore(store.path)
    assert _files(store.path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_store_is_refused_for_writing(store):
    store.add_image(SAMPLE.image)
    before = _files(store.path)
    for path in [store.path, *store.path.rglob("*")]:
        if path.is_dir():
            path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(StoreError, match="read-only"):
            AnnotationStore(store.path).add_labels(SAMPLE.image, SAMPLE.labels)
        assert _files(store.path) == before
    finally:
        for path in [store.path, *store.path.rglob("*")]:
            if path.is_dir():
                path.chmod(stat.S_IRWXU)


def test_a_read_only_store_is_refused_for_writing_even_as_root(store, monkeypatch):
    # Root ignores permission bits; simulate what os.access reports for a read-only mount.
    store.add_image(SAMPLE.image)
    before = _files(store.path)
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK)
    with pytest.raises(StoreError, match="read-only"):
        store.add_labels(SAMPLE.image, SAMPLE.labels)
    assert _files(store.path) == before


def test_a_folder_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "x.sampeft.zarr").mkdir()
    with pytest.raises(StoreError, match="not a napari-sam-peft annotation store"):
        AnnotationStore(tmp_path / "x.sampeft.zarr")
    with pytest.raises(StoreError, match="No annotation store"):
        AnnotationStore(tmp_path / "missing.sampeft.zarr")
    with pytest.raises(StoreError, match="end in"):
        AnnotationStore.create(tmp_path / "wrong-name")


def test_a_store_can_be_created_several_missing_folders_deep(tmp_path):
    store = AnnotationStore.create(tmp_path / "a" / "b" / "c" / "project.sampeft.zarr")
    assert store.info()["images"] == 0


def test_records_come_back_in_commit_order_and_arrays_round_trip(tmp_path):
    import numpy as np

    folder = StoreFolder(tmp_path / "f.sampeft.zarr", create=True)
    for n in range(3):
        folder.append({"op": "note", "n": n})
    assert [r["n"] for r in folder.records()] == [0, 1, 2] and all("time" in r for r in folder.records())
    folder.write_array("images", "abc", SAMPLE.labels)
    np.testing.assert_array_equal(folder.read_array("images", "abc"), SAMPLE.labels)
