"""What a run resolves once from its job and its data: the learning rate and steps, and the loop's settings.

The job (:class:`~.job.TrainingJob`) says what to train and stays as the user gave it; the
:class:`Schedule` fills in what it leaves open (the recommended rate and steps, smaller for a
continuation; the loop's settings are then ``TrainingConfig.of(job, schedule)``, :mod:`.loop`). The
run (:mod:`.run`), the Finetune widget's estimate and the demos all ask
:func:`schedule_for`, so the numbers a user is shown are the ones the run takes; and every place that
starts a run refuses a store with nothing to train on with :func:`check_training_data`'s one message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SamPeftError
from ..peft.recommend import recommended_lr, recommended_steps
from ..sam.architecture import Architecture
from .continuation import CONTINUATION_LR_FACTOR, continuation_steps

NO_TRAINING_OBJECTS = "There are no training objects yet: commit objects in the Segment widget (S, then C)"


def check_training_data(info: Mapping[str, Any] | None) -> None:
    """Refuse a store with no training objects (``info``: its ``AnnotationStore.info()``; None: no store).

    Raises
    ------
    SamPeftError
        Saying what to do: commit objects, or train on the validation images' objects by changing a split.
    """
    if info is not None and info["train_objects"] > 0:
        return
    held = info["val_objects"] if info is not None else 0
    raise SamPeftError(
        NO_TRAINING_OBJECTS
        + (
            f"; the {held} committed so far are on validation images: set one image's split to 'train' in the "
            "Dataset widget, or commit objects on another image."
            if held
            else ", or add labelled images with napari-sam-peft store add IMAGE --labels LABELS."
        )
    )


@dataclass(frozen=True)
class Schedule:
    """A run's learning rate and steps, and how each was chosen ("given", "recommended", "recommended for a
    continuation")."""

    lr: float
    steps: int
    lr_chosen: str
    steps_chosen: str


def schedule_for(
    method: str,
    architecture: Architecture,
    train_objects: int,
    objects_per_image: int,
    new_objects: int | None = None,
    lr: float | None = None,
    steps: int | None = None,
) -> Schedule:
    """The learning rate and steps of a run of ``method`` on ``architecture`` with ``train_objects``.

    ``new_objects``: a continuation's objects committed since its parent (None: a run from the base
    model). ``lr`` and ``steps`` are the user's (None, or 0 steps: recommended).
    """
    continuing = new_objects is not None
    recommended = "recommended for a continuation" if continuing else "recommended"
    if lr is None:
        base_lr = recommended_lr(method, architecture)
        lr, lr_chosen = (continued_lr(base_lr) if continuing else base_lr), recommended
    else:
        lr_chosen = "given"
    if steps:  # 0, as the widget's empty field, is recommended too
        steps_chosen = "given"
    else:
        steps, steps_chosen = schedule_steps(train_objects, objects_per_image, new_objects), recommended
    return Schedule(lr=float(lr), steps=int(steps), lr_chosen=lr_chosen, steps_chosen=steps_chosen)


def continued_lr(recommended: float) -> float:
    """The rate recommended for a continuation, from a run's from the base model (the start is already a
    good adapter: a smaller step keeps what it learnt)."""
    return recommended * CONTINUATION_LR_FACTOR


def schedule_steps(train_objects: int, objects_per_image: int, new_objects: int | None = None) -> int:
    """The steps recommended for ``train_objects`` (a continuation: for its ``new_objects``)."""
    if new_objects is not None:
        return continuation_steps(new_objects, train_objects, objects_per_image)
    return recommended_steps(train_objects, objects_per_image)
