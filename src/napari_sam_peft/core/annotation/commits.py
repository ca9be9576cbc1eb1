"""Committing segmented objects into an instance label image, and undoing commits.

Pure numpy, so the annotator's commit/undo behaviour is tested without a viewer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage


@dataclass
class Commit:
    """One commit, enough to undo it."""

    object_ids: list[int]
    indices: tuple[np.ndarray, ...]
    previous: np.ndarray


@dataclass
class CommitHistory:
    """The commits made on one image, newest last."""

    commits: list[Commit] = field(default_factory=list)

    def commit(self, labels: np.ndarray, source: np.ndarray) -> list[int]:
        """Write each object of ``source`` into ``labels`` (in place) under a new id; returns the ids.

        New objects are drawn over what was there; undo puts it back.
        """
        ids = [int(i) for i in np.unique(source) if i != 0]
        next_id = int(labels.max()) + 1 if labels.size else 1
        indices = np.nonzero(source != 0)
        previous = labels[indices].copy()
        new_ids = list(range(next_id, next_id + len(ids)))
        for old, new in zip(ids, new_ids, strict=True):
            labels[source == old] = new
        self.commits.append(Commit(new_ids, indices, previous))
        return new_ids

    def undo(self, labels: np.ndarray) -> Commit | None:
        """Take the last commit back out of ``labels`` (in place); None if there is none."""
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


def prompt_record(prompts) -> dict:
    """An :class:`~napari_sam_peft.core.annotation.prompting.ObjectPrompts` as the store records it (JSON)."""
    return {
        "points": prompts.points.tolist(),
        "labels": prompts.labels.tolist(),
        "box": None if prompts.box is None else prompts.box.tolist(),
    }


def keep_object_components(mask: np.ndarray, points: np.ndarray, point_labels: np.ndarray) -> np.ndarray:
    """A mask without stray specks: its largest connected part plus any part under a positive point.

    SAM's masks often carry a few disconnected pixels away from the object; committing them
    would teach the adapter noise.
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
