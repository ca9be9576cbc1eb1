"""The Finetune widget's status line for each event of a training run (see core.training.events)."""

from __future__ import annotations

import math

from napari_sam_peft.core.training.events import (
    Baseline,
    Error,
    Evaluating,
    Event,
    Finished,
    Prepared,
    Progress,
    Started,
)
from napari_sam_peft.core.training.job import format_value


def status_line(event: Event) -> str | None:
    """What the status line says after ``event``; None for events that do not change it."""
    if isinstance(event, Started):
        slower = event.precision_reason.startswith("given; ")  # asked for, and the probe found it slower
        warning = f" (warning: {event.precision_reason.removeprefix('given; ')})" if slower else ""
        parent = event.continued_from
        continuing = f" continuing from adapter {parent['hash'][:12]} ({parent['replay']})," if parent else ""
        return (
            f"Training {event.method} on {event.device}:{continuing} {event.trainable_params:,} parameters, "
            f"{event.train_images} training images, lr {format_value(event.lr)}"
            f"{' (recommended)' if event.lr_chosen.startswith('recommended') else ''}, {event.steps} steps"
            f"{' (recommended)' if event.steps_chosen.startswith('recommended') else ''}, "
            f"{event.precision}{warning}; {event.recipe_summary or 'the paper recipe'}; "
            f"validation on {event.measured_on or 'n/a'}. "
            "Running the frozen encoder blocks once per image..."
        )
    if isinstance(event, Prepared):
        return f"Frozen encoder blocks done in {event.seconds:.1f} s; training..."
    if isinstance(event, Baseline):
        return f"Before training: validation box IoU {event.score:.3f}; training..."
    if isinstance(event, Progress):
        eta = f", {event.eta_seconds:.0f} s left" if math.isfinite(event.eta_seconds) else ""
        best = f", best val {event.best_score:.3f}" if event.best_score is not None else ""
        return (
            f"Step {event.step}/{event.steps}: loss {event.loss:.3f}{best}, {event.its_per_second:.2f} it/s{eta}"
        )
    if isinstance(event, Evaluating):
        return f"Evaluating base and adapter on {event.measured_on or str(event.images) + ' images'}..."
    if isinstance(event, Finished):
        score = f"{event.best_score:.3f}" if event.best_score is not None else "n/a"
        where = f" ({event.validation})" if event.validation else ""
        return (
            f"Training {event.status.replace('_', ' ')}: best validation box IoU {score}{where}. "
            f"Adapter: {event.path}"
        )
    if isinstance(event, Error):
        return f"Training failed: {event.message}"  # the status line keeps it after the notification is gone
    return None


def event_path(event: Event) -> str | None:
    """The file an event names (the adapter), shown whole when the status line is hovered."""
    path = getattr(event, "path", None)
    return str(path) if path is not None else None


ONLY_TRAINING_DATA = (
    "There is only one annotated object, so nothing can be held out: the validation scores of this run "
    "are measured on its training data. Commit more objects for an honest score."
)
