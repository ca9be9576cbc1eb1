"""The one atomic writer: readers see the old file or the new one, never a half-written one."""

from __future__ import annotations

import pytest

from napari_sam_peft.core.atomic import atomic_path, write_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "run.json"
    write_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_folder_replaces_the_old_folder_or_keeps_it_when_asked(tmp_path):
    target = tmp_path / "entry.zarr"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("first")
    with atomic_path(target, keep_existing=True) as tmp:  # a cache entry another process wrote first
        tmp.mkdir()
        (tmp / "a").write_text("second")
    assert (target / "a").read_text() == "first"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["entry.zarr"]


def test_the_temporary_keeps_the_suffix_and_creates_the_folder(tmp_path):
    target = tmp_path / "new" / "adapter.safetensors"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".safetensors" and tmp.parent == target.parent and tmp.name.startswith(".")
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x"
