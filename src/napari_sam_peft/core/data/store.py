"""The annotation store: every committed object becomes training data, and a crash loses nothing.

A store is a directory ``NAME.sampeft.zarr`` (zarr v3)::

    zarr.json                       root group; attrs: format, format_version
    images/<image_id>/image         the image (zarr array), written once
    objects/<object_id>/mask        the object's mask, cropped to its bounding box
    commits/<seq>-<uuid>.json       the journal: one small JSON file per commit

Durability comes from the order of writes. Arrays are written first, under fresh ids
nobody references yet; the commit record that makes them data is written to a temporary
file and renamed into ``commits/`` (an atomic step on POSIX and Windows). A process killed at
any moment therefore leaves either a complete commit or unreferenced arrays that readers
never see. Nothing is ever rewritten in place, so a reader (the training worker) and the
annotator never block each other: a snapshot is the list of commit records at one moment.

Operations recorded in the journal: ``add_image``, ``add_object``, ``remove_object``,
``remove_image``, ``set_split``. The split is deterministic from the image id
(``validation_fraction``) unless a ``set_split`` overrides it.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..atomic import atomic_path, write_atomic
from ..errors import SamPeftError

STORE_FORMAT = "napari-sam-peft/store"
STORE_FORMAT_VERSION = 1
STORE_SUFFIX = ".sampeft.zarr"
DEFAULT_STORE_NAME = f"annotations{STORE_SUFFIX}"  # the store a folder gets when only the folder is named
SPLITS = ("train", "val")


class StoreError(SamPeftError):
    """A store that cannot be opened or written, or data that cannot go into it."""


@dataclass
class StoredObject:
    object_id: str
    image_id: str
    bbox: tuple[int, int, int, int]  # row0, col0, row1, col1 (exclusive)
    prompts: dict[str, Any]
    source: str  # "prompts", "automatic", "automatic-edited", "imported"
    created: str


@dataclass
class StoredImage:
    image_id: str
    name: str
    shape: tuple[int, ...]
    split: str
    created: str
    objects: list[StoredObject] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """The store's content as of one moment: what a training run reads and records."""

    images: tuple[StoredImage, ...]
    snapshot_id: str

    def info(self) -> dict[str, Any]:
        train = [i for i in self.images if i.split == "train"]
        val = [i for i in self.images if i.split == "val"]
        return {
            "images": len(self.images),
            "objects": sum(len(i.objects) for i in self.images),
            "train_images": len(train),
            "val_images": len(val),
            "train_objects": sum(len(i.objects) for i in train),
            "val_objects": sum(len(i.objects) for i in val),
            "snapshot": self.snapshot_id,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def default_split(image_id: str, validation_fraction: float = 0.2) -> str:
    """A deterministic split from the image id: the same image is always on the same side."""
    bucket = int(hashlib.sha256(image_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if bucket < validation_fraction else "train"


class AnnotationStore:
    """Append-only, crash-safe storage of images, object masks, prompts and the split."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False, validation_fraction: float = 0.2):
        self.path = Path(path)
        self.validation_fraction = validation_fraction
        if create and not self.path.exists():
            self._create()
        self._check()

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | os.PathLike[str], **kwargs) -> AnnotationStore:
        path = Path(path)
        if not path.name.endswith(STORE_SUFFIX):
            raise StoreError(
                f"Store folders end in {STORE_SUFFIX!r} (e.g. 'project{STORE_SUFFIX}'), not {path.name!r}."
            )
        return cls(path, create=True, **kwargs)

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
        if not self.path.is_dir():
            raise StoreError(f"No annotation store at {self.path}. Create one (Dataset widget or 'store add').")
        try:
            attrs = dict(zarr.open_group(str(self.path), mode="r").attrs)
        except Exception:  # noqa: BLE001 - anything unreadable is "not a store"
            attrs = {}
        if attrs.get("format") != STORE_FORMAT or not (self.path / "commits").is_dir():
            raise StoreError(f"{self.path} is not a napari-sam-peft annotation store.")
        version = int(attrs.get("format_version", 0))
        if version > STORE_FORMAT_VERSION:
            raise StoreError(
                f"{self.path.name} was written by a newer napari-sam-peft (store format {version}; this version "
                f"reads {STORE_FORMAT_VERSION}). Update napari-sam-peft."
            )

    @property
    def writable(self) -> bool:
        return os.access(self.path / "commits", os.W_OK) and os.access(self.path / "objects", os.W_OK)

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(
                f"The store {self.path} is read-only: copy it somewhere writable, or fix its permissions."
            )

    # ------------------------------------------------------------------ journal
    def _records(self) -> list[dict[str, Any]]:
        records = []
        for path in sorted((self.path / "commits").glob("*.json")):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue  # only complete files are ever renamed here; skip anything else defensively
        return records

    def _append(self, record: dict[str, Any]) -> None:
        record = {**record, "time": _now()}
        name = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex}.json"
        write_atomic(self.path / "commits" / name, json.dumps(record, sort_keys=True))  # the commit point

    def _write_array(self, group: str, key: str, data: np.ndarray) -> None:
        root = zarr.open_group(str(self.path), mode="r+")
        node = root[group].create_group(key)
        chunks = tuple(min(int(n), 1024) for n in data.shape) or None
        array = node.create_array("data", shape=data.shape, dtype=data.dtype, chunks=chunks)
        array[...] = data

    def _read_array(self, group: str, key: str) -> np.ndarray:
        return np.asarray(zarr.open_array(str(self.path / group / key / "data"), mode="r")[...])

    # ------------------------------------------------------------------ writing
    def add_image(self, image: np.ndarray, name: str = "", split: str | None = None) -> str:
        """Store an image (once: the same pixels return the same id) and return its id."""
        self._require_writable()
        image = np.asarray(image)
        if image.size == 0 or image.ndim not in (2, 3):
            raise StoreError(f"Cannot store an image of shape {image.shape}: the store takes 2D (or RGB) images.")
        digest = image_id_for(image)
        known = {i.image_id for i in self.snapshot().images}
        if digest in known:
            if split is not None:
                self.set_split(digest, split)
            return digest
        if split is not None and split not in SPLITS:
            raise StoreError(f"Unknown split {split!r}: choose 'train' or 'val'.")
        if not (self.path / "images" / digest / "data" / "zarr.json").exists():
            self._write_array("images", digest, image)
        self._append(
            {"op": "add_image", "image_id": digest, "name": name, "shape": list(image.shape), "split": split}
        )
        return digest

    def add_object(
        self,
        image_id: str,
        mask: np.ndarray,
        prompts: dict[str, Any] | None = None,
        source: str = "prompts",
    ) -> str:
        """Store one object's mask on an image, with the prompts that made it. Returns its id."""
        self._require_writable()
        images = {i.image_id: i for i in self.snapshot().images}
        if image_id not in images:
            raise StoreError(f"Image {image_id!r} is not in the store: add the image first.")
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise StoreError("An object mask must be boolean.")
        if mask.shape != tuple(images[image_id].shape[:2]):
            raise StoreError(
                f"The mask has shape {mask.shape} but the image is {tuple(images[image_id].shape[:2])}."
            )
        if not mask.any():
            raise StoreError("The object is empty: nothing to store.")
        rows, cols = np.nonzero(mask)
        bbox = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
        object_id = uuid.uuid4().hex[:16]
        self._write_array("objects", object_id, mask[bbox[0] : bbox[2], bbox[1] : bbox[3]])
        self._append(
            {
                "op": "add_object",
                "object_id": object_id,
                "image_id": image_id,
                "bbox": list(bbox),
                "prompts": _jsonable(prompts or {}),
                "source": source,
            }
        )
        return object_id

    def add_labels(
        self, image: np.ndarray, labels: np.ndarray, name: str = "", split: str | None = None
    ) -> tuple[str, list[str]]:
        """Import an image with an instance label image: one object per label id.

        Validates everything before writing anything, so a bad input leaves the store unchanged.
        """
        ids = validate_labels(image, labels)
        labels = np.asarray(labels)
        image_id = self.add_image(image, name=name, split=split)
        object_ids = [self.add_object(image_id, labels == i, source="imported") for i in ids]
        return image_id, object_ids

    def remove_object(self, object_id: str) -> None:
        self._require_writable()
        self._append({"op": "remove_object", "object_id": object_id})

    def remove_image(self, image_id: str) -> None:
        self._require_writable()
        self._append({"op": "remove_image", "image_id": image_id})

    def set_split(self, image_id: str, split: str) -> None:
        if split not in SPLITS:
            raise StoreError(f"Unknown split {split!r}: choose 'train' or 'val'.")
        self._require_writable()
        self._append({"op": "set_split", "image_id": image_id, "split": split})

    # ------------------------------------------------------------------ reading
    def snapshot(self) -> Snapshot:
        """The store's current content (a consistent view: later commits do not change it)."""
        records = self._records()
        images: dict[str, StoredImage] = {}
        objects: dict[str, StoredObject] = {}
        for record in records:
            op = record.get("op")
            if op == "add_image" and record["image_id"] not in images:
                image_id = record["image_id"]
                split = record.get("split") or default_split(image_id, self.validation_fraction)
                images[image_id] = StoredImage(
                    image_id, record.get("name", ""), tuple(record["shape"]), split, record["time"]
                )
            elif op == "add_object" and record["image_id"] in images:
                objects[record["object_id"]] = StoredObject(
                    record["object_id"],
                    record["image_id"],
                    tuple(record["bbox"]),
                    record.get("prompts", {}),
                    record.get("source", "prompts"),
                    record["time"],
                )
            elif op == "remove_object":
                objects.pop(record["object_id"], None)
            elif op == "remove_image":
                images.pop(record["image_id"], None)
                objects = {k: o for k, o in objects.items() if o.image_id != record["image_id"]}
            elif op == "set_split" and record["image_id"] in images:
                images[record["image_id"]].split = record["split"]
        for obj in objects.values():
            if obj.image_id in images:
                images[obj.image_id].objects.append(obj)
        digest = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()[:32]
        return Snapshot(images=tuple(images.values()), snapshot_id=digest)

    def image(self, image_id: str) -> np.ndarray:
        return self._read_array("images", image_id)

    def object_mask(self, obj: StoredObject, shape: tuple[int, int]) -> np.ndarray:
        mask = np.zeros(shape, dtype=bool)
        r0, c0, r1, c1 = obj.bbox
        mask[r0:r1, c0:c1] = self._read_array("objects", obj.object_id)
        return mask

    def labels(self, image: StoredImage) -> np.ndarray:
        """The instance labels of an image: objects numbered 1..n in commit order."""
        labels = np.zeros(image.shape[:2], dtype=np.uint32)
        for index, obj in enumerate(image.objects, start=1):
            r0, c0, r1, c1 = obj.bbox
            crop = self._read_array("objects", obj.object_id)
            labels[r0:r1, c0:c1][crop] = index
        return labels

    def info(self) -> dict[str, Any]:
        return self.snapshot().info()


def image_id_for(image: np.ndarray) -> str:
    """The id a store gives an image: a digest of its shape, dtype and pixels."""
    image = np.ascontiguousarray(image)
    return hashlib.sha256(f"{image.shape}|{image.dtype.str}|".encode() + image.tobytes()).hexdigest()[:24]


def validate_labels(image: np.ndarray, labels: np.ndarray) -> list[int]:
    """The object ids of an instance label image, after checking it fits the image."""
    image, labels = np.asarray(image), np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise StoreError(f"Labels must be integers (instance ids), not {labels.dtype}.")
    if labels.shape != image.shape[:2]:
        raise StoreError(
            f"The labels have shape {labels.shape} but the image is {image.shape[:2]}: they must match."
        )
    ids = [int(i) for i in np.unique(labels) if i != 0]
    if not ids:
        raise StoreError("The label image is empty (only background): there are no objects to import.")
    return ids


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
