"""Keep an annotation store equal to the committed labels the user sees.

The annotator's ``committed_objects`` label image changes in three ways: a commit adds
objects, an undo takes them back, and the user paints, erases or fills by hand to correct
them (the way micro_sam and Cellpose users work). :class:`LabelRecorder` compares a label
image with what it recorded for that image and writes only the differences to the store:
new label ids become objects, changed ones are replaced (source ``"corrected"``), vanished
ones are removed. Whichever way the labels changed, the store ends up holding them.

After a restart, :meth:`LabelRecorder.restore` gives back the labels of an image the store
already holds and remembers them as recorded, so committing again adds no duplicates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..data.store import AnnotationStore, image_id_for

CORRECTED = "corrected"  # source of an object whose mask the user changed after committing
PAINTED = "painted"  # source of an object the user painted without prompts


@dataclass(frozen=True)
class RecordedObject:
    """One label id as last written to the store: its object there, mask digest, source and prompts."""

    object_id: str
    digest: str  # of the mask as last recorded (bbox + pixels)
    source: str
    prompts: dict[str, Any]


@dataclass
class SyncResult:
    """What one :meth:`LabelRecorder.sync` wrote: label ids added, replaced and removed."""

    added: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)

    @property
    def wrote(self) -> bool:
        """Whether the store changed."""
        return bool(self.added or self.changed or self.removed)


def label_masks(labels: np.ndarray) -> dict[int, tuple[tuple[slice, ...], np.ndarray]]:
    """Each label id's bounding box and cropped mask, in one pass over the image.

    Parameters
    ----------
    labels
        An instance label image (H, W); 0 is background.

    Returns
    -------
    dict
        ``{label id: (bounding box as slices, boolean mask inside it)}``.
    """
    labels = np.asarray(labels)
    found: dict[int, tuple[tuple[slice, ...], np.ndarray]] = {}
    if not labels.any():
        return found
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None:
            found[index] = (box, labels[box] == index)
    return found


def _digest(box: tuple[slice, ...], crop: np.ndarray) -> str:
    head = f"{box[0].start},{box[0].stop},{box[1].start},{box[1].stop}|".encode()
    return hashlib.sha256(head + np.packbits(crop).tobytes()).hexdigest()[:24]


class LabelRecorder:
    """Writes the differences between committed label images and an annotation store."""

    def __init__(self, store: AnnotationStore) -> None:
        self.store = store
        self._recorded: dict[str, dict[int, RecordedObject]] = {}  # image id -> label id -> object

    def restore(self, image: np.ndarray) -> np.ndarray | None:
        """The stored objects of ``image`` as labels 1..n, remembered as recorded.

        Returns
        -------
        np.ndarray or None
            The labels (H, W); None if the store holds no objects of ``image``.
        """
        image_id = image_id_for(image)
        stored = next((i for i in self.store.snapshot().images if i.image_id == image_id), None)
        if stored is None or not stored.objects:
            return None
        labels = self.store.labels(stored)
        visible = label_masks(labels)
        self._recorded[image_id] = {
            index: RecordedObject(obj.object_id, _digest(*visible[index]), obj.source, obj.prompts)
            for index, obj in enumerate(stored.objects, start=1)
            if index in visible  # an object painted over completely is not shown, so not kept
        }
        return labels

    def sync(
        self,
        image: np.ndarray,
        labels: np.ndarray,
        name: str = "",
        prompts: dict[int, dict[str, Any]] | None = None,
        sources: dict[int, str] | None = None,
    ) -> SyncResult:
        """Record the objects of ``labels`` on ``image``: add new ids, replace changed ones, drop gone ones.

        Parameters
        ----------
        image
            The image the labels belong to (its pixels identify it in the store).
        labels
            Its committed instance labels (H, W), as the user sees them.
        name
            The image's name in the store.
        prompts, sources
            The prompts and source of the ids just committed; an id without a source was
            painted by hand (or, if it was recorded before, corrected).

        Returns
        -------
        SyncResult
            The label ids added, replaced and removed.
        """
        prompts, sources = prompts or {}, sources or {}
        image_id = image_id_for(image)
        recorded = self._recorded.setdefault(image_id, {})
        current = label_masks(labels)
        result = SyncResult()
        image_added = False
        for label_id in [i for i in recorded if i not in current]:
            self.store.remove_object(recorded.pop(label_id).object_id)
            result.removed.append(label_id)
        for label_id, (box, crop) in current.items():
            digest = _digest(box, crop)
            known = recorded.get(label_id)
            if known is not None and known.digest == digest:
                continue
            if known is None:
                source = sources.get(label_id, PAINTED)
                object_prompts = prompts.get(label_id, {})
                result.added.append(label_id)
            else:
                self.store.remove_object(known.object_id)
                source = sources.get(label_id, CORRECTED)
                object_prompts = prompts.get(label_id, known.prompts)
                result.changed.append(label_id)
            if not image_added:  # idempotent: the same pixels are stored once
                self.store.add_image(
                    image, name=name, split=self._first_split(image_id), volume=np.ndim(labels) == 3
                )
                image_added = True
            mask = np.zeros(np.shape(labels), dtype=bool)
            mask[box] = crop
            object_id = self.store.add_object(image_id, mask, prompts=object_prompts, source=source)
            recorded[label_id] = RecordedObject(object_id, digest, source, object_prompts)
        return result

    def _first_split(self, image_id: str) -> str | None:
        """``"train"`` for a store's first annotated image, else None (the store's deterministic split).

        The deterministic split sets aside about one image in five for validation; had it taken the first
        one, the user's first Start would find no training objects.
        """
        images = self.store.snapshot().images
        if any(i.image_id == image_id for i in images) or any(i.split == "train" and i.objects for i in images):
            return None
        return "train"
