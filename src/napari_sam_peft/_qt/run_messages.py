"""The Finetune widget's status line for each event of a training run (see core.training_job)."""

from __future__ import annotations

from typing import Any


def status_line(event: dict[str, Any]) -> str | None:
    """What the status line says after ``event``; None for events that do not change it."""
    kind = event.get("event")
    if kind == "started":
        return (
            f"Training {event['method']} on {event['device']}: {event['trainable_params']:,} parameters, "
            f"{event['train_images']} training images; validation on {event.get('measured_on', 'n/a')}. "
            "Running the frozen encoder blocks once per image..."
        )
    if kind == "prepared":
        return f"Frozen encoder blocks done in {event['seconds']:.1f} s; training..."
    if kind == "progress":
        eta = f", {event['eta_seconds']:.0f} s left" if event.get("eta_seconds") is not None else ""
        best = f", best val {event['best_score']:.3f}" if event.get("best_score") is not None else ""
        return (
            f"Step {event['step']}/{event['steps']}: loss {event['loss']:.3f}{best}, "
            f"{event['its_per_second']:.2f} it/s{eta}"
        )
    if kind == "evaluating":
        return f"Evaluating base and adapter on {event.get('measured_on') or str(event['images']) + ' images'}..."
    if kind == "finished":
        score = f"{event['best_score']:.3f}" if event.get("best_score") is not None else "n/a"
        where = f" ({event['validation']})" if event.get("validation") else ""
        return (
            f"Training {event['status'].replace('_', ' ')}: best validation box IoU {score}{where}. "
            f"Adapter: {event['path']}"
        )
    if kind == "error":
        return "Training failed: see the notification."
    return None


ONLY_TRAINING_DATA = (
    "There is only one annotated object, so nothing can be held out: the validation scores of this run "
    "are measured on its training data. Commit more objects for an honest score."
)
