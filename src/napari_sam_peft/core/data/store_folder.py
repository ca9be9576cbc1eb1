"""A store's folder on disk: its format marker, the commit journal and the arrays it references.

Layout (zarr v3)::

    zarr.json                       root group; attrs: format, format_version
    images/<image_id>/data          an image (zarr array), written once
    objects/<object_id>/data        an object's mask, cropped to its bounding box
    commits/<time>-<uuid>.json      the journal: one small JSON file per commit

Arrays are written first, under fresh ids nobody references yet; a commit record is then
written atomically (:mod:`..atomic`) into ``commits/``, which is the moment it becomes data.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from ..atomic import atomic_path, write_atomic
from ..errors import SamPeftError

STORE_FORMAT = "napari-sam-peft/store"
STORE_FORMAT_VERSION = 1


class StoreError(SamPeftError):
    """A store that cannot be opened or written, or data that cannot go into it."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class StoreFolder:
    """The files of one store: create or check the folder, append and read commits, write and read arrays."""

    def __init__(self, path: Path, create: bool = False) -> None:
        self.path = path
        self._parsed: dict[str, dict[str, Any]] = {}  # commit file name -> record: files never change
        if create and not path.exists():
            self._create()
        self._check()

    def _create(self) -> None:
        parent = self.path.parent
        existing = next(folder for folder in (parent, *parent.parents) if folder.exists())
        if not os.access(existing, os.W_OK):
            raise StoreError(
                f"Cannot create a store in {parent}: the folder is not writable. Choose another folder."
            )
        with atomic_path(self.path, keep_existing=True) as tmp:  # two processes may create it at once
            root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            root.attrs.update({"format": STORE_FORMAT, "format_version": STORE_FORMAT_VERSION, "created": _now()})
            root.create_group("images")
            root.create_group("objects")
            (tmp / "commits").mkdir()

    def _check(self) -> None:
        if self.path.is_file():
            raise StoreError(
                f"{self.path} is a file, not an annotation store (a folder ending in .sampeft.zarr): choose a "
                "folder, or a new name for a store."
            )
        if not self.path.is_dir():
            raise StoreError(f"No annotation store at {self.path}. Create one (Dataset widget or 'store add').")
        try:
            attrs = dict(zarr.open_group(str(self.path), mode="r").attrs)
        except Exception:  # noqa: BLE001 - anything unreadable is "not a store"
            attrs = {}
        if attrs.get("format") != STORE_FORMAT or not (self.path / "commits").is_dir():
            raise StoreError(f"{self.path} is not a napari-sam-peft annotation store.")
        version = int(cast(int, attrs.get("format_version", 0)))
        if version > STORE_FORMAT_VERSION:
            raise StoreError(
                f"{self.path.name} was written by a newer napari-sam-peft (store format {version}; this version "
                f"reads {STORE_FORMAT_VERSION}). Update napari-sam-peft."
            )

    @property
    def writable(self) -> bool:
        """Whether this process may add commits and arrays."""
        return os.access(self.path / "commits", os.W_OK) and os.access(self.path / "objects", os.W_OK)

    def require_writable(self) -> None:
        """Raise :class:`StoreError` if commits cannot be written (a read-only copy)."""
        if not self.writable:
            raise StoreError(
                f"The store {self.path} is read-only: copy it somewhere writable, or fix its permissions."
            )

    def records(self) -> list[dict[str, Any]]:
        """Every complete commit record, oldest first (the same dict objects each time: a commit file is
        read once, and only new ones are read again, whoever wrote them)."""
        records = []
        for path in sorted((self.path / "commits").glob("*.json")):
            record = self._parsed.get(path.name)
            if record is None:
                try:
                    record = self._parsed[path.name] = json.loads(path.read_text())
                except (OSError, json.JSONDecodeError):
                    continue  # only complete files are ever renamed here; skip anything else defensively
            records.append(record)
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Commit one record (stamped with the time): after this call it is data."""
        record = {**record, "time": _now()}
        name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex}.json"
        write_atomic(self.path / "commits" / name, json.dumps(record, sort_keys=True))  # the commit point

    def write_array(self, group: str, key: str, data: Any, by_slice: bool = False) -> None:
        """Write ``data`` as ``group/key`` (an id no commit references yet).

        ``by_slice``: a volume, chunked and written one slice at a time (never read whole).
        """
        node = zarr.open_group(str(self.path / group), mode="r+").create_group(key)
        shape = tuple(int(n) for n in np.shape(data))
        chunks = tuple(min(n, 1024) for n in shape)
        if by_slice:
            chunks = (1, *chunks[1:])
        array = node.create_array("data", shape=shape, dtype=np.dtype(data.dtype), chunks=chunks)
        if by_slice:
            for z in range(shape[0]):
                array[z] = np.asarray(data[z])
        else:
            array[...] = np.asarray(data)

    def open_array(self, group: str, key: str) -> zarr.Array:
        """The array ``group/key``, read lazily."""
        return zarr.open_array(str(self.path / group / key / "data"), mode="r")

    def read_array(self, group: str, key: str) -> np.ndarray:
        """The array ``group/key`` as numpy."""
        return np.asarray(zarr.open_array(str(self.path / group / key / "data"), mode="r")[...])
