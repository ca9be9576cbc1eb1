"""A store's images as 2D training and evaluation samples: a volume gives its slices that hold objects.

Training samples 2D slices from volumes, as micro_sam's ``MinInstanceSampler`` does (a slice counts
when it holds at least one object), so the training objective, the stage cache and the instance
decoder see volumes as they see images. Each sample remembers where it came from, so a run's
record can name the image and slice of every held-out sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.snapshot import StoredImage
from ..data.store import AnnotationStore

Sample = tuple[np.ndarray, np.ndarray]  # image (H, W[, 3]) and instance labels (H, W)


@dataclass(frozen=True)
class SampleOrigin:
    """Where a sample came from: the stored image, and the slice when it is a volume's."""

    image_id: str
    z: int | None = None


def slices_with_objects(labels: np.ndarray, min_objects: int = 1) -> list[int]:
    """The slices of 3D ``labels`` that hold at least ``min_objects`` objects."""
    return [z for z in range(labels.shape[0]) if len(np.unique(labels[z])) - 1 >= min_objects]


def read_samples(store: AnnotationStore, images: list[StoredImage]) -> tuple[list[Sample], list[SampleOrigin]]:
    """Every image as one sample and every volume as its slices that hold objects (read one at a time)."""
    samples: list[Sample] = []
    origins: list[SampleOrigin] = []
    for image in images:
        labels = store.labels(image)
        if not image.volume:
            samples.append((store.image(image.image_id), labels))
            origins.append(SampleOrigin(image.image_id))
            continue
        volume = store.lazy_image(image.image_id)
        for z in slices_with_objects(labels):
            samples.append((np.asarray(volume[z]), labels[z]))
            origins.append(SampleOrigin(image.image_id, z))
    return samples, origins


def held_out_volumes(
    store: AnnotationStore, images: list[StoredImage], ranges: dict[str, list[int]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The held-out z-range ``ranges[image id] = [first, last]`` of each volume among ``images``, as
    (pixels, 3D labels) read into memory: what a run scores its 3D columns on when it split by z-range.
    An object that crosses the range's boundary is scored on its slices inside it."""
    by_id = {image.image_id: image for image in images}
    return [
        (np.asarray(store.lazy_image(image_id)[first : last + 1]), store.labels(by_id[image_id])[first : last + 1])
        for image_id, (first, last) in ranges.items()
    ]


def count_slices(images: list[StoredImage]) -> int:
    """How many training samples ``images`` make (see ``StoredImage.sample_count``)."""
    return sum(image.sample_count for image in images)


def z_ranges(origins: list[SampleOrigin], indices: list[int]) -> dict[str, Any]:
    """The slices of each volume among ``indices``, as {image id: [first, last]}."""
    ranges: dict[str, list[int]] = {}
    for index in indices:
        origin = origins[index]
        if origin.z is None:
            continue
        first, last = ranges.get(origin.image_id, [origin.z, origin.z])
        ranges[origin.image_id] = [min(first, origin.z), max(last, origin.z)]
    return dict(ranges)
