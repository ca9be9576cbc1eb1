"""What a store holds at one moment: the journal's records replayed into images, objects and splits.

A snapshot is a consistent view: later commits do not change it, and its id (a digest of the
records) names exactly the data a training run read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StoredObject:
    """One committed object: its mask lives in the store under ``object_id``, cropped to ``bbox``."""

    object_id: str
    image_id: str
    bbox: tuple[int, ...]  # row0, col0, row1, col1 (exclusive); a volume's: z0, row0, col0, z1, row1, col1
    prompts: dict[str, Any]
    source: str  # "prompts", "automatic", "automatic-edited", "imported"
    created: str


@dataclass
class StoredImage:
    """One stored image, its split and its objects in commit order."""

    image_id: str
    name: str
    shape: tuple[int, ...]
    split: str
    created: str
    objects: list[StoredObject] = field(default_factory=list)
    volume: bool = False  # (Z, Y, X) or (Z, Y, X, 3), with 3D objects

    @property
    def sample_count(self) -> int:
        """How many 2D training samples it gives: 1 for an annotated image, for a volume its slices that
        hold objects (those its objects' boxes span, read from the records without loading a mask)."""
        if not self.volume:
            return 1 if self.objects else 0
        return len({z for obj in self.objects for z in range(obj.bbox[0], obj.bbox[3])})

    @property
    def sample_objects(self) -> int:
        """Its objects as training samples count them: a volume's 3D object once on each slice it spans."""
        if not self.volume:
            return len(self.objects)
        return sum(obj.bbox[3] - obj.bbox[0] for obj in self.objects)

    @property
    def labels_shape(self) -> tuple[int, ...]:
        """The shape of its instance labels and object masks: (Y, X), or (Z, Y, X) for a volume."""
        return tuple(self.shape[:3] if self.volume else self.shape[:2])


@dataclass(frozen=True)
class Snapshot:
    """The store's content as of one moment: what a training run reads and records."""

    images: tuple[StoredImage, ...]
    snapshot_id: str

    def info(self) -> dict[str, Any]:
        """Counts of images and objects, per split, and the snapshot id."""
        train = [i for i in self.images if i.split == "train"]
        val = [i for i in self.images if i.split == "val"]
        return {
            "images": len(self.images),
            "volumes": sum(i.volume for i in self.images),
            "objects": sum(len(i.objects) for i in self.images),
            "train_images": len(train),
            "val_images": len(val),
            "train_objects": sum(len(i.objects) for i in train),
            "train_samples": sum(i.sample_count for i in train),  # a volume counts its slices with objects
            "train_sample_objects": sum(i.sample_objects for i in train),  # and its objects once per slice
            "val_objects": sum(len(i.objects) for i in val),
            "snapshot": self.snapshot_id,
        }


def default_split(image_id: str, validation_fraction: float = 0.2) -> str:
    """A deterministic split from the image id: the same image is always on the same side."""
    bucket = int(hashlib.sha256(image_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if bucket < validation_fraction else "train"


def replay(records: list[dict[str, Any]], validation_fraction: float = 0.2) -> Snapshot:
    """The store's content after the journal's ``records``, in order (``AnnotationStore.snapshot``)."""
    images: dict[str, StoredImage] = {}
    objects: dict[str, StoredObject] = {}
    for record in records:
        op = record.get("op")
        if op == "add_image" and record["image_id"] not in images:
            image_id = record["image_id"]
            split = record.get("split") or default_split(image_id, validation_fraction)
            images[image_id] = StoredImage(
                image_id, record.get("name", ""), tuple(record["shape"]), split, record["time"],
                volume=bool(record.get("volume", False)),
            )  # fmt: skip
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


def prefix_with_id(records: list[dict[str, Any]], snapshot_id: str) -> int | None:
    """How many of the journal's first ``records`` make the snapshot ``snapshot_id`` (None: no prefix does).

    The journal only grows, so the snapshot a run read is a prefix of today's records; the digest of
    each prefix is computed incrementally, as :func:`replay` computes it of the whole list.
    """
    digest = hashlib.sha256(b"[")
    for count in range(len(records) + 1):
        if count:
            digest.update((b", " if count > 1 else b"") + json.dumps(records[count - 1], sort_keys=True).encode())
        whole = digest.copy()
        whole.update(b"]")
        if whole.hexdigest()[:32] == snapshot_id:
            return count
    return None
