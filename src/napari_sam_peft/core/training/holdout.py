"""What a training run validates and evaluates on, and holding out data when the store has no validation split.

Scores measured on the images a model was trained on overestimate how well it generalises, so a run
never uses them silently. :func:`plan_validation` decides, deterministically from a seed:

- the store has validation objects: use them (``"validation split"``);
- no validation objects, five or more training images: hold out whole images, about 20% of them
  (at least one) (``"held out automatically"``);
- no validation objects, fewer images: hold out about 20% of the objects (at least one, never all),
  chosen across the images, as validation samples of the same images; the training samples keep the
  others, so no image is lost to training when there are few (``"held out automatically"``);
- a single training object: nothing can be held out, validation and evaluation run on the training
  data (``"training data"``), and the description says so;
- no validation objects and volumes among the training data (:func:`plan_z_range_validation`): the
  top z-range of each volume's slices with objects, about 20%, is held out, never single slices, as
  neighbouring slices are nearly the same image; the description says it split by z-range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..volume.store_slices import SampleOrigin

#: the three answers to "what were the validation and evaluation scores measured on?"
VALIDATION_SPLIT = "validation split"
HELD_OUT = "held out automatically"
TRAINING_DATA = "training data"

#: the share of training images (or, with few images, of their objects) held out
HOLD_OUT_FRACTION = 0.2
#: from this many training images on, whole images are held out (below, objects)
MIN_IMAGES_TO_HOLD_OUT_IMAGES = 5

Sample = tuple[np.ndarray, np.ndarray]


def object_ids(labels: np.ndarray) -> list[int]:
    """The instance labels present in a label image (0 is background)."""
    return [int(i) for i in np.unique(labels) if i != 0]


def hold_out_count(n: int, fraction: float = HOLD_OUT_FRACTION) -> int:
    """How many of ``n`` items to hold out: about ``fraction``, at least 1, never all (0 when ``n`` < 2)."""
    if n < 2:
        return 0
    return min(max(1, round(n * fraction)), n - 1)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass
class ValidationPlan:
    """The training and validation samples of a run, and a plain description of where validation came from.

    ``held_out_images`` are indices into the training images given to :func:`plan_validation`;
    ``held_out_objects`` are (image index, label value) pairs of the objects held out;
    ``train_indices[i]`` is the index of ``train[i]`` among the training images given.
    """

    train: list[Sample]
    val: list[Sample]
    validation: str
    description: str
    held_out_images: list[int] = field(default_factory=list)
    held_out_objects: list[tuple[int, int]] = field(default_factory=list)
    train_indices: list[int] = field(default_factory=list)

    @property
    def on_training_data(self) -> bool:
        """Whether validation and evaluation scores are measured on the data being trained on."""
        return self.validation == TRAINING_DATA

    def counts(self) -> dict[str, int]:
        """Images and objects on each side (on training data, the validation side is the training side)."""
        return {
            "train_images": len(self.train),
            "train_objects": sum(len(object_ids(labels)) for _, labels in self.train),
            "val_images": len(self.val),
            "val_objects": sum(len(object_ids(labels)) for _, labels in self.val),
        }

    def summary(self) -> dict[str, Any]:
        """The JSON-ready description that goes into events and the run record."""
        return {"validation": self.validation, "measured_on": self.description, **self.counts()}


def plan_validation(
    train: Sequence[Sample], val: Sequence[Sample], seed: int = 0, fraction: float = HOLD_OUT_FRACTION
) -> ValidationPlan:
    """Split off validation data when ``val`` has no objects; see the module docstring for the rules.

    The choice depends only on ``seed`` and the number of images (or objects), so every process of a
    distributed run makes the same one.
    """
    given = [i for i, s in enumerate(train) if object_ids(s[1])]
    train = [train[i] for i in given]
    val = [s for s in val if object_ids(s[1])]
    if val:
        n_objects = sum(len(object_ids(labels)) for _, labels in val)
        return ValidationPlan(
            train,
            val,
            VALIDATION_SPLIT,
            f"the store's validation split: {_plural(len(val), 'image')}, {_plural(n_objects, 'object')}",
            train_indices=given,
        )
    rng = np.random.default_rng(seed)
    if len(train) >= MIN_IMAGES_TO_HOLD_OUT_IMAGES:
        held = sorted(int(i) for i in rng.choice(len(train), hold_out_count(len(train), fraction), replace=False))
        return ValidationPlan(
            [s for i, s in enumerate(train) if i not in held],
            [train[i] for i in held],
            HELD_OUT,
            f"held out automatically: {len(held)} of {len(train)} training images "
            "(no validation split in the store)",
            held_out_images=held,
            train_indices=[given[i] for i in range(len(train)) if i not in held],
        )
    if not train:
        return ValidationPlan([], [], TRAINING_DATA, "nothing: there are no annotated training images")
    pairs = [(index, value) for index, (_, labels) in enumerate(train) for value in object_ids(labels)]
    n_held = hold_out_count(len(pairs), fraction)
    if n_held == 0:
        return ValidationPlan(
            train,
            list(train),
            TRAINING_DATA,
            "training data: the store has no validation split and only 1 training object, so nothing "
            "could be held out; validation and evaluation scores are measured on the object being trained on",
            train_indices=given,
        )
    held_objects = sorted(pairs[int(i)] for i in rng.choice(len(pairs), n_held, replace=False))
    kept_train, held_val, kept = [], [], []
    for index, (image, labels) in enumerate(train):
        values = [value for i, value in held_objects if i == index]
        is_held = np.isin(labels, values)
        if (labels[~is_held] != 0).any():
            kept_train.append((image, np.where(is_held, 0, labels).astype(labels.dtype)))
            kept.append(given[index])
        if values:
            held_val.append((image, np.where(is_held, labels, 0).astype(labels.dtype)))
    where = "the only training image" if len(train) == 1 else f"{len(train)} training images"
    return ValidationPlan(
        kept_train,
        held_val,
        HELD_OUT,
        f"held out automatically: {n_held} of {len(pairs)} objects of {where} "
        "(no validation split in the store; too few images to hold out whole ones)",
        held_out_objects=held_objects,
        train_indices=kept,
    )


def plan_z_range_validation(
    train: Sequence[Sample], origins: Sequence[SampleOrigin], fraction: float = HOLD_OUT_FRACTION
) -> ValidationPlan | None:
    """Hold out the top z-range of each volume among ``train`` (None when no volume has 2 slices).

    ``origins[i]`` says which volume and slice sample ``i`` is (``SampleOrigin``); 2D images stay in
    training. ``held_out_images`` are the held-out samples' indices.
    """
    by_volume: dict[str, list[int]] = {}
    for index, origin in enumerate(origins):
        if origin.z is not None:
            by_volume.setdefault(origin.image_id, []).append(index)
    held: list[int] = []
    ranges: list[str] = []
    for indices in by_volume.values():
        indices = sorted(indices, key=lambda i: origins[i].z or 0)
        n_held = hold_out_count(len(indices), fraction)
        if n_held:
            top = indices[len(indices) - n_held :]
            held += top
            ranges.append(f"slices {origins[top[0]].z}-{origins[top[-1]].z}")
    if not held:
        return None
    n_slices = sum(len(indices) for indices in by_volume.values())
    return ValidationPlan(
        [s for i, s in enumerate(train) if i not in held],
        [train[i] for i in held],
        HELD_OUT,
        f"held out automatically by z-range: {', '.join(ranges)} of {_plural(len(ranges), 'volume')} "
        f"({len(held)} of {n_slices} slices with objects; no validation split in the store; an object that "
        "crosses the boundary is on both sides)",
        held_out_images=sorted(held),
        train_indices=[i for i in range(len(train)) if i not in held],
    )
