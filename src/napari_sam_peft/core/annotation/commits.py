"""Committing segmented objects into an instance label image, and undoing commits.

Pure numpy, so the annotator's commit/undo behaviour is tested without a viewer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from .prompting import ObjectPrompts

PROMPTED = "prompts"  # source of an object segmented from the user's prompts
AUTOMATIC = "automatic"  # source of an automatic proposal committed as it was
AUTOMATIC_EDITED = "automatic-edited"  # source of an automatic proposal the user changed first


@dataclass
class Commit:
    """One commit, enough to undo it.

    Attributes
    ----------
    object_ids
        The label ids the commit gave its objects.
    indices
        The pixels it wrote (``np.nonzero`` of the committed objects).
    previous
        What those pixels held before.
    """

    object_ids: list[int]
    indices: tuple[np.ndarray, ...]
    previous: np.ndarray


@dataclass
class CommitHistory:
    """The commits made on one image, newest last."""

    commits: list[Commit] = field(default_factory=list)

    def commit(self, labels: np.ndarray, source: np.ndarray) -> list[int]:
        """Write each object of ``source`` into ``labels`` (in place) under a new id.

        New objects are drawn over what was there; undo puts it back.

        Parameters
        ----------
        labels
            The committed instance labels (H, W), changed in place.
        source
            Objects to commit as labels (H, W): each non-zero id is one object.

        Returns
        -------
        list[int]
            The new ids, in the order of the objects' ids in ``source``.
        """
        ids = object_ids(source)
        next_id = int(labels.max()) + 1 if labels.size else 1
        indices = np.nonzero(source != 0)
        previous = labels[indices].copy()
        new_ids = list(range(next_id, next_id + len(ids)))
        for old, new in zip(ids, new_ids, strict=True):
            labels[source == old] = new
        self.commits.append(Commit(new_ids, indices, previous))
        return new_ids

    def undo(self, labels: np.ndarray) -> Commit | None:
        """Take the last commit back out of ``labels`` (in place).

        Returns
        -------
        Commit or None
            The commit taken back; None if there is none.
        """
        if not self.commits:
            return None
        last = self.commits.pop()
        labels[last.indices] = last.previous
        return last


@dataclass
class ImageAnnotations:
    """What the user committed on one image, and how to undo it."""

    labels: np.ndarray
    history: CommitHistory = field(default_factory=CommitHistory)


def object_ids(labels: np.ndarray) -> list[int]:
    """The non-zero label ids of ``labels``, ascending."""
    return [int(i) for i in np.unique(labels) if i != 0]


def prompt_record(prompts: ObjectPrompts) -> dict[str, Any]:
    """An object's prompts as the store records them (JSON: points, point labels, box)."""
    record = {
        "points": prompts.points.tolist(),
        "labels": prompts.labels.tolist(),
        "box": None if prompts.box is None else prompts.box.tolist(),
    }
    return record if prompts.slice is None else {**record, "slice": int(prompts.slice)}


def commit_prompts(
    old_ids: Sequence[int], new_ids: Sequence[int], prompts: Sequence[ObjectPrompts]
) -> dict[int, dict[str, Any]]:
    """Each committed object's prompts, by its new id.

    Object ``i`` of a segmentation was made by ``prompts[i - 1]``; objects without prompts
    (more objects than prompts) get none.
    """
    return {
        new: prompt_record(prompts[old - 1])
        for old, new in zip(old_ids, new_ids, strict=True)
        if old - 1 < len(prompts)
    }


def automatic_sources(objects: np.ndarray, proposal: np.ndarray | None) -> list[str]:
    """``"automatic"`` for each object of ``objects`` left as the model proposed it, else ``"automatic-edited"``.

    Parameters
    ----------
    objects
        The automatic segmentation as the user left it (labels, H x W).
    proposal
        What the model proposed (None: unknown, so every object counts as edited).

    Returns
    -------
    list[str]
        One source per object id of ``objects``, ascending.
    """
    return [
        AUTOMATIC if proposal is not None and np.array_equal(objects == obj, proposal == obj) else AUTOMATIC_EDITED
        for obj in object_ids(objects)
    ]


def keep_object_components(mask: np.ndarray, points: np.ndarray, point_labels: np.ndarray) -> np.ndarray:
    """A mask without stray specks: its largest connected part plus any part under a positive point.

    SAM's masks often carry a few disconnected pixels away from the object; committing them
    would teach the adapter noise.

    Parameters
    ----------
    mask
        One object's mask (H, W).
    points, point_labels
        The object's prompt points (row, col) and their labels (1 positive, 0 negative).

    Returns
    -------
    np.ndarray
        The boolean mask that is kept.
    """
    mask = np.asarray(mask, dtype=bool)
    components, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = {int(np.argmax(sizes))}
    points, point_labels = np.asarray(points).reshape(-1, 2), np.asarray(point_labels).reshape(-1)
    for (row, col), label in zip(points, point_labels, strict=True):
        r, c = int(round(row)), int(round(col))
        if label == 1 and 0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and components[r, c]:
            keep.add(int(components[r, c]))
    return np.isin(components, list(keep))
