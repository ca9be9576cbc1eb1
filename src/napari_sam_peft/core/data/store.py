"""The annotation store: every committed object becomes training data, and a crash loses nothing.

A store is a directory ``NAME.sampeft.zarr`` (its layout: :mod:`.store_folder`).

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
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .snapshot import Snapshot, StoredImage, StoredObject, default_split, prefix_with_id, replay
from .store_folder import STORE_FORMAT, STORE_FORMAT_VERSION, StoreError, StoreFolder

__all__ = [
    "STORE_FORMAT",
    "STORE_FORMAT_VERSION",
    "AnnotationStore",
    "Snapshot",
    "StoreError",
    "StoredImage",
    "StoredObject",
    "default_split",
    "image_id_for",
    "validate_labels",
]

STORE_SUFFIX = ".sampeft.zarr"
DEFAULT_STORE_NAME = f"annotations{STORE_SUFFIX}"  # the store a folder gets when only the folder is named
SPLITS = ("train", "val")


class AnnotationStore:
    """Append-only, crash-safe storage of images, object masks, prompts and the split."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False, validation_fraction: float = 0.2):
        self.path = Path(path)
        self.validation_fraction = validation_fraction
        self.folder = StoreFolder(self.path, create=create)
        self._snapshot: tuple[tuple[int, ...], Snapshot] | None = None

    @classmethod
    def create(cls, path: str | os.PathLike[str], **kwargs: float) -> AnnotationStore:
        """Create a new store at ``path`` (its name must end in ``.sampeft.zarr``) and open it.

        Raises
        ------
        StoreError
            A name without the suffix, or a folder that is not writable.
        """
        path = Path(path)
        if not path.name.endswith(STORE_SUFFIX):
            raise StoreError(
                f"Store folders end in {STORE_SUFFIX!r} (e.g. 'project{STORE_SUFFIX}'), not {path.name!r}."
            )
        return cls(path, create=True, **kwargs)

    def add_image(self, image: Any, name: str = "", split: str | None = None, *, volume: bool = False) -> str:
        """Store an image (once: the same pixels return the same id) and return its id.

        ``volume``: ``image`` is a (Z, Y, X) or (Z, Y, X, 3) volume, read and written slice by slice (a
        zarr or memory-mapped array is never loaded whole).
        """
        self.folder.require_writable()
        if volume:
            _check_volume(image)
        else:
            image = np.asarray(image)
            if image.size == 0 or image.ndim not in (2, 3):
                raise StoreError(
                    f"Cannot store an image of shape {image.shape}: the store takes 2D (or RGB) images and "
                    "volumes."
                )
        digest = image_id_for(image)
        known = {i.image_id for i in self.snapshot().images}
        if digest in known:
            if split is not None:
                self.set_split(digest, split)
            return digest
        if split is not None and split not in SPLITS:
            raise StoreError(f"Unknown split {split!r}: choose 'train' or 'val'.")
        if not (self.path / "images" / digest / "data" / "zarr.json").exists():
            self.folder.write_array("images", digest, image, by_slice=volume)
        record = {"op": "add_image", "image_id": digest, "name": name, "shape": list(np.shape(image))}
        self.folder.append({**record, "split": split, **({"volume": True} if volume else {})})
        return digest

    def add_object(
        self,
        image_id: str,
        mask: np.ndarray,
        prompts: dict[str, Any] | None = None,
        source: str = "prompts",
    ) -> str:
        """Store one object's mask on an image, with the prompts that made it. Returns its id."""
        self.folder.require_writable()
        images = {i.image_id: i for i in self.snapshot().images}
        if image_id not in images:
            raise StoreError(f"Image {image_id!r} is not in the store: add the image first.")
        mask = np.asarray(mask)
        if mask.dtype != bool:
            raise StoreError("An object mask must be boolean.")
        stored = images[image_id]
        if mask.shape != stored.labels_shape:
            what = "volume" if stored.volume else "image"
            raise StoreError(f"The mask has shape {mask.shape} but the {what} is {stored.labels_shape}.")
        if not mask.any():
            raise StoreError("The object is empty: nothing to store.")
        nonzero = np.nonzero(mask)
        bbox = tuple(int(axis.min()) for axis in nonzero) + tuple(int(axis.max()) + 1 for axis in nonzero)
        object_id = uuid.uuid4().hex[:16]
        self.folder.write_array("objects", object_id, mask[_box_slices(bbox)])
        self.folder.append(
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
        volume = np.ndim(labels) == 3
        ids = validate_labels(image, labels)
        labels = np.asarray(labels)
        image_id = self.add_image(image, name=name, split=split, volume=volume)
        object_ids = [self.add_object(image_id, labels == i, source="imported") for i in ids]
        return image_id, object_ids

    def remove_object(self, object_id: str) -> None:
        """Remove one object from the training data (its mask stays on disk, unreferenced)."""
        self.folder.require_writable()
        self.folder.append({"op": "remove_object", "object_id": object_id})

    def remove_image(self, image_id: str) -> None:
        """Remove an image and its objects from the training data."""
        self.folder.require_writable()
        self.folder.append({"op": "remove_image", "image_id": image_id})

    def set_split(self, image_id: str, split: str) -> None:
        """Put an image in the ``train`` or ``val`` split.

        Raises
        ------
        StoreError
            An unknown split, or a read-only store.
        """
        if split not in SPLITS:
            raise StoreError(f"Unknown split {split!r}: choose 'train' or 'val'.")
        self.folder.require_writable()
        self.folder.append({"op": "set_split", "image_id": image_id, "split": split})

    def snapshot(self) -> Snapshot:
        """The store's current content (a consistent view: later commits do not change it). Replayed again
        only when the journal has new records (by this process or another): every dock and count reads it."""
        records = self.folder.records()
        key = tuple(map(id, records))  # the folder keeps each parsed record: its identity stands for the file
        if self._snapshot is None or self._snapshot[0] != key:
            self._snapshot = (key, replay(records, self.validation_fraction))
        return self._snapshot[1]

    def snapshot_at(self, snapshot_id: str) -> Snapshot | None:
        """The store's content when its snapshot had id ``snapshot_id`` (a run's), or None if it never had."""
        records = self.folder.records()
        count = prefix_with_id(records, snapshot_id)
        return None if count is None else replay(records[:count], self.validation_fraction)

    def image(self, image_id: str) -> np.ndarray:
        """The stored pixels of an image (a volume's whole; :meth:`lazy_image` reads slices on demand)."""
        return self.folder.read_array("images", image_id)

    def lazy_image(self, image_id: str) -> Any:
        """The stored image as a zarr array: indexing reads only what it asks for (a volume's slice)."""
        return self.folder.open_array("images", image_id)

    def object_mask(self, obj: StoredObject, shape: tuple[int, ...]) -> np.ndarray:
        """An object's mask on an image of ``shape`` ((Y, X), or (Z, Y, X) for a volume; False outside its box)."""
        mask = np.zeros(shape, dtype=bool)
        mask[_box_slices(obj.bbox)] = self.folder.read_array("objects", obj.object_id)
        return mask

    def labels(self, image: StoredImage) -> np.ndarray:
        """The instance labels of an image or volume: objects numbered 1..n in commit order."""
        labels = np.zeros(image.labels_shape, dtype=np.uint32)
        for index, obj in enumerate(image.objects, start=1):
            crop = self.folder.read_array("objects", obj.object_id)
            labels[_box_slices(obj.bbox)][crop] = index
        return labels

    def info(self) -> dict[str, Any]:
        """Counts of images and objects per split, and the snapshot id (see :meth:`Snapshot.info`)."""
        return self.snapshot().info()


def image_id_for(image: Any) -> str:
    """The id a store gives an image: a digest of its shape, dtype and pixels (read slice by slice)."""
    shape, dtype = tuple(int(n) for n in np.shape(image)), np.dtype(image.dtype)
    digest = hashlib.sha256(f"{shape}|{dtype.str}|".encode())
    if len(shape) <= 2 or isinstance(image, np.ndarray):
        digest.update(np.ascontiguousarray(image).tobytes())
    else:  # the same bytes in the same order as a whole array's, one slice in memory at a time
        for z in range(shape[0]):
            digest.update(np.ascontiguousarray(np.asarray(image[z], dtype=dtype)).tobytes())
    return digest.hexdigest()[:24]


def _check_volume(image: Any) -> None:
    """A volume is (Z, Y, X) or (Z, Y, X, 3) with at least 2 slices (checked on the shape alone)."""
    shape = tuple(int(n) for n in np.shape(image))
    if len(shape) == 4 and shape[-1] != 3 or len(shape) not in (3, 4):
        raise StoreError(
            f"Cannot store a volume of shape {shape}: the store takes (Z, Y, X) or (Z, Y, X, 3) volumes; for a "
            "time series of volumes or channels first, add one volume or one channel at a time."
        )
    if shape[0] < 2 or min(shape[1:3]) < 1:
        raise StoreError(f"A volume of shape {shape} has fewer than 2 slices: add it as a 2D image.")


def _box_slices(bbox: tuple[int, ...]) -> tuple[slice, ...]:
    """A bounding box (starts..., stops...) as index slices."""
    half = len(bbox) // 2
    return tuple(slice(start, stop) for start, stop in zip(bbox[:half], bbox[half:], strict=True))


def validate_labels(image: Any, labels: Any) -> list[int]:
    """The object ids of an instance label image (2D, or 3D for a volume), after checking it fits the image.

    A 3D ``labels`` makes ``image`` a volume: (Z, Y, X) or (Z, Y, X, 3). Neither is loaded whole
    beyond the labels.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise StoreError(f"Labels must be integers (instance ids), not {labels.dtype}.")
    shape = tuple(int(n) for n in np.shape(image))
    if len(shape) >= 4:  # a 4D image is refused as what it is, before its labels are compared with it
        _check_volume(image)
    if labels.ndim == 3:
        _check_volume(image)
        if labels.shape != shape[:3]:
            raise StoreError(
                f"The labels have shape {labels.shape} but the volume is {shape[:3]}: they must match (Z, Y, X)."
            )
    elif labels.shape != shape[:2]:
        raise StoreError(f"The labels have shape {labels.shape} but the image is {shape[:2]}: they must match.")
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
