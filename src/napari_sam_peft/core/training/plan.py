"""What a run resolves once from its job and its data: the recipe, learning rate and steps, the loop's settings.

The job (:class:`~.job.TrainingJob`) says what to train and stays as the user gave it; the
:class:`Schedule` fills in what it leaves open: its recipe (:mod:`.recipe`, by the device where the job
says ``auto``) sets the objects and correction passes per step and how often to validate, and the
recommended rate (times the recipe's factor) and steps, smaller for a continuation. The loop's settings
are then ``TrainingConfig.of(schedule)`` (:mod:`.loop`). The run (:mod:`.run`), the Finetune widget's
estimate and the demos all ask :func:`job_schedule`, so the numbers a user is shown are the ones the run
takes; and every place that starts a run refuses a store with nothing to train on with
:func:`check_training_data`'s one message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SamPeftError
from ..peft.recommend import PASSES_OVER_OBJECTS, recommended_lr, recommended_steps
from ..sam.architecture import Architecture
from .continuation import CONTINUATION_LR_FACTOR, continuation_steps
from .recipe import Recipe, recipe_for

if TYPE_CHECKING:
    from .job import TrainingJob

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
    """A run's recipe, learning rate, steps and per-step settings, and how the rate and steps were chosen
    ("given", "recommended", "recommended for a continuation")."""

    recipe: Recipe
    lr: float
    steps: int
    lr_chosen: str
    steps_chosen: str
    objects_per_image: int
    sub_iterations: int
    validate_every: int

    def describe(self) -> str:
        """The recipe as a user reads it, with what the job changed: "the CPU recipe: ... (given: 16 objects
        per step)"."""
        recipe = self.recipe
        changed = [
            text
            for value, default, text in (
                (
                    self.objects_per_image,
                    recipe.objects_per_image,
                    f"{_count(self.objects_per_image, 'object')} per step",
                ),
                (self.sub_iterations, recipe.sub_iterations, _count(self.sub_iterations, "correction pass", "es")),
                (
                    self.validate_every,
                    recipe.validate_every,
                    f"validation every {_count(self.validate_every, 'step')}",
                ),
            )
            if value != default
        ]
        return recipe.summary + (f" (given: {', '.join(changed)})" if changed else "")


def _count(n: int, noun: str, plural: str = "s") -> str:
    return f"{n} {noun}{'' if n == 1 else plural}"


def schedule_for(
    method: str,
    architecture: Architecture,
    train_objects: int,
    recipe: Recipe,
    new_objects: int | None = None,
    lr: float | None = None,
    steps: int | None = None,
    objects_per_image: int | None = None,
    sub_iterations: int | None = None,
    validate_every: int | None = None,
) -> Schedule:
    """The schedule of a run of ``method`` on ``architecture`` with ``train_objects``, by ``recipe``.

    ``new_objects``: a continuation's objects committed since its parent (None: a run from the base
    model). The other arguments are the user's (None, or 0 steps: the recipe's, or recommended).
    """
    continuing = new_objects is not None
    recommended = "recommended for a continuation" if continuing else "recommended"
    if lr is None:
        base_lr = recipe.rate(recommended_lr(method, architecture))
        lr, lr_chosen = (continued_lr(base_lr) if continuing else base_lr), recommended
    else:
        lr_chosen = "given"
    objects = objects_per_image or recipe.objects_per_image
    if steps:  # 0, as the widget's empty field, is recommended too
        steps_chosen = "given"
    else:
        steps = schedule_steps(train_objects, objects, new_objects, recipe.passes_over_objects)
        steps_chosen = recommended
    return Schedule(
        recipe=recipe,
        lr=float(lr),
        steps=int(steps),
        lr_chosen=lr_chosen,
        steps_chosen=steps_chosen,
        objects_per_image=objects,
        sub_iterations=recipe.sub_iterations if sub_iterations is None else sub_iterations,
        validate_every=validate_every or recipe.validate_every,
    )


def job_schedule(
    job: TrainingJob,
    method: str,
    architecture: Architecture,
    train_objects: int,
    device_type: str,
    new_objects: int | None = None,
) -> Schedule:
    """The schedule of ``job`` on a device of ``device_type`` (its recipe ``auto`` is chosen by it)."""
    return schedule_for(
        method,
        architecture,
        train_objects,
        recipe_for(job.recipe, device_type),
        new_objects,
        lr=job.lr,
        steps=job.steps,
        objects_per_image=job.objects_per_image,
        sub_iterations=job.sub_iterations,
        validate_every=job.validate_every,
    )


def continued_lr(recommended: float) -> float:
    """The rate recommended for a continuation, from a run's from the base model (the start is already a
    good adapter: a smaller step keeps what it learnt)."""
    return recommended * CONTINUATION_LR_FACTOR


def schedule_steps(
    train_objects: int, objects_per_image: int, new_objects: int | None = None, passes: float = PASSES_OVER_OBJECTS
) -> int:
    """The steps recommended for ``train_objects`` (a continuation: for its ``new_objects``), ``passes`` over
    them (a recipe's :attr:`~.recipe.Recipe.passes_over_objects`)."""
    if new_objects is not None:
        return continuation_steps(new_objects, train_objects, objects_per_image, passes)
    return recommended_steps(train_objects, objects_per_image, passes)
