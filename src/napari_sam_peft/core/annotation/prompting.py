"""Prompt-based segmentation: points and boxes to masks, through micro_sam's functions.

Coordinates are napari's: points as (row, col), boxes as (row_min, col_min, row_max, col_max).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SamPeftError


class NoPromptsError(SamPeftError):
    """Segmenting was asked for without any prompt."""


class AmbiguousPromptsError(SamPeftError):
    """Prompts that do not say which object each belongs to."""


@dataclass
class ObjectPrompts:
    """The prompts of one object: points with labels (1 positive, 0 negative) and at most one box."""

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=int))
    box: np.ndarray | None = None
    slice: int | None = None  # the volume slice the prompts were placed on (None: a 2D image)

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=float).reshape(-1, 2)
        self.labels = np.asarray(self.labels, dtype=int).reshape(-1)
        if self.box is not None:
            self.box = np.asarray(self.box, dtype=float).reshape(4)

    @property
    def is_empty(self) -> bool:
        """Whether the object has neither points nor a box."""
        return self.box is None and not (self.labels == 1).any()


def box_from_corners(corners: np.ndarray) -> np.ndarray:
    """A napari rectangle (4 corner vertices, (row, col)) as (row_min, col_min, row_max, col_max)."""
    corners = np.asarray(corners)[:, -2:]
    return np.concatenate([corners.min(axis=0), corners.max(axis=0)])


def segment_object(predictor: Any, embeddings: dict, prompts: ObjectPrompts) -> np.ndarray:
    """One boolean mask for one object's prompts.

    Raises
    ------
    NoPromptsError
        Without a box or at least one positive point.
    """
    from micro_sam.prompt_based_segmentation import (
        segment_from_box,
        segment_from_box_and_points,
        segment_from_points,
    )

    if prompts.is_empty:
        raise NoPromptsError(
            "There is nothing to segment: place a positive point or draw a box first, then press S."
        )
    if prompts.box is not None and len(prompts.points):
        mask = segment_from_box_and_points(
            predictor, prompts.box, prompts.points, prompts.labels, image_embeddings=embeddings
        )
    elif prompts.box is not None:
        mask = segment_from_box(predictor, prompts.box, image_embeddings=embeddings)
    else:
        mask = segment_from_points(predictor, prompts.points, prompts.labels, image_embeddings=embeddings)
    return np.asarray(mask).squeeze().astype(bool)


def segment_objects(predictor: Any, embeddings: dict, objects: Sequence[ObjectPrompts]) -> list[np.ndarray]:
    """One mask per object (batch mode)."""
    if not objects:
        raise NoPromptsError("There is nothing to segment: place points or draw boxes first, then press S.")
    return [segment_object(predictor, embeddings, prompts) for prompts in objects]


def split_into_objects(
    points: np.ndarray, labels: np.ndarray, boxes: Sequence[np.ndarray], batch: bool
) -> list[ObjectPrompts]:
    """Group prompts into objects.

    Single mode: all prompts describe one object, except that several boxes (without
    points) are several objects; several boxes with points are ambiguous and refused.
    Batch mode: each box is one object and each positive point is one object (negative
    points apply to every point object).
    """
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    labels = np.asarray(labels, dtype=int).reshape(-1)
    if not batch:
        if len(boxes) > 1 and len(points):
            raise AmbiguousPromptsError(
                f"In single mode one object takes one box and its points, but there are {len(boxes)} boxes "
                f"and {len(points)} point(s): delete all boxes but one, or switch on batch mode to segment "
                "one object per box and per positive point."
            )
        if len(boxes) > 1:
            return [ObjectPrompts(box=box) for box in boxes]
        return [ObjectPrompts(points=points, labels=labels, box=boxes[0] if boxes else None)]
    negatives = labels == 0
    objects = [ObjectPrompts(box=box) for box in boxes]
    objects += [
        ObjectPrompts(
            points=np.concatenate([points[i : i + 1], points[negatives]]),
            labels=np.concatenate([[1], labels[negatives]]),
        )
        for i in np.flatnonzero(labels == 1)
    ]
    return objects
