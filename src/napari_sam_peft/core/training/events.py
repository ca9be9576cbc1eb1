"""What a training run reports: one versioned dataclass per event, written as a JSON line.

``napari-sam-peft train --events`` prints one event per line on stdout (``{"event": "progress",
"version": 1, "step": 3, ...}``); :func:`event_from_json` reads it back, and every consumer (the
worker, the terminal, the Finetune widget, the demo) reads attributes. A run reports
:class:`Started`, :class:`Prepared`, :class:`Baseline`, :class:`Progress` after every step (with :class:`Best`
whenever validation improves), :class:`Evaluating` and :class:`Evaluation` when asked to
evaluate, and ends with :class:`Finished` or :class:`Error`.

Each event class has a ``version``; a reader ignores fields it does not know and events it does not
know, and turns an event it cannot read (one from a newer version) into a clear :class:`Error`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ClusterError, SamPeftError
from ..evaluation.report import EvaluationReport


@dataclass(frozen=True)
class TrainingEvent:
    """Structured progress, reported after every step and validation."""

    step: int
    steps: int
    loss: float
    val_score: float | None
    best_score: float | None
    its_per_second: float
    eta_seconds: float
    improved: bool = False


class Event:
    """Base of the events: ``event`` names the kind on the wire, ``version`` its schema."""

    event: ClassVar[str]
    version: ClassVar[int] = 1
    #: whether the run has ended with this event
    terminal: ClassVar[bool] = False

    def values(self) -> dict[str, Any]:
        """The event's fields, JSON-ready."""
        return asdict(self)  # type: ignore[call-overload]  # every event is a dataclass

    def to_json(self) -> str:
        """One line of JSON: ``{"event": ..., "version": ..., **fields}``."""
        return json.dumps({"event": self.event, "version": self.version, **self.values()}, default=str)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Event:
        """The event from its JSON fields (the inverse of :meth:`values`)."""
        return cls(**values)


@dataclass(frozen=True)
class Started(Event):
    """The run has begun: where it writes, what it trains, and what validation is measured on.

    ``validation`` is "validation split", "held out automatically" or "training data" and
    ``measured_on`` says it in a sentence (see :mod:`.holdout`); the counts are images and objects
    on each side, and ``held_out_*`` the store ids of what was held out of training.
    """

    event: ClassVar[str] = "started"

    run_dir: str
    path: str
    preset: str
    method: str
    trainable_params: int
    validation: str
    measured_on: str
    train_images: int
    train_objects: int
    val_images: int
    val_objects: int
    held_out_images: list[str]
    held_out_objects: list[str]
    device: str
    steps: int
    world_size: int
    #: the AdamW learning rate, and "recommended" or "given" (by the user)
    lr: float = 0.0
    lr_chosen: str = ""
    #: whether ``steps`` was "recommended" (for the number of training objects) or "given"
    steps_chosen: str = ""
    #: the recipe (``paper`` or ``cpu``) and what it does, with what the job changed (``Schedule.describe``)
    recipe: str = ""
    recipe_summary: str = ""
    #: the estimated seconds of a step (the decoder's from the precision probe's measured pass)
    estimated_step_seconds: float = 0.0
    #: the precision the run trains in (fp32, bf16, fp16) and why ("auto: ..." or "given")
    precision: str = "fp32"
    precision_reason: str = ""
    #: a volume's held-out z-range, by store id: [first, last] slice (validation by z-range only)
    held_out_slices: dict[str, list[int]] = field(default_factory=dict)
    #: a continuation's parent adapter (file, hash) and what the steps draw; {} for a run from the base model
    continued_from: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared(Event):
    """The frozen encoder stages have run once on every image; training steps begin.

    ``first_trained_stage`` is where each step starts; ``reused`` embeddings came from the cache.
    """

    event: ClassVar[str] = "prepared"

    seconds: float
    first_trained_stage: int
    computed: int
    reused: int


@dataclass(frozen=True)
class Baseline(Event):
    """The validation box IoU of the model training starts from (the base model, or the adapter a
    continuation starts from): what each new best adapter is measured against."""

    event: ClassVar[str] = "baseline"

    score: float


@dataclass(frozen=True)
class Progress(TrainingEvent, Event):
    """A training step: :class:`TrainingEvent` (``val_score`` is None between validations).

    An unknown time left (``eta_seconds`` infinite) is ``null`` on the wire.
    """

    event: ClassVar[str] = "progress"

    def values(self) -> dict[str, Any]:
        """The fields, JSON-ready: an infinite ``eta_seconds`` is None."""
        values = asdict(self)
        if not math.isfinite(self.eta_seconds):
            values["eta_seconds"] = None
        return values

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Progress:
        """The event from its JSON fields: a None ``eta_seconds`` is infinite again."""
        eta = values.get("eta_seconds")
        return cls(**{**values, "eta_seconds": math.inf if eta is None else eta})

    @classmethod
    def of(cls, event: TrainingEvent) -> Progress:
        """The progress event of the loop's ``event``."""
        return cls(**asdict(event))


@dataclass(frozen=True)
class Best(Event):
    """Validation improved: the adapter at ``path`` is the new best.

    ``step`` is the step it was validated at, ``score`` its validation box IoU.
    """

    event: ClassVar[str] = "best"

    path: str
    step: int
    score: float


@dataclass(frozen=True)
class Evaluating(Event):
    """Base vs adapter evaluation on ``images`` validation images begins (``--evaluate``)."""

    event: ClassVar[str] = "evaluating"
    images: int
    validation: str
    measured_on: str


@dataclass(frozen=True)
class Evaluation(EvaluationReport, Event):
    """Base vs adapter mSA at the end of a run: the run's :class:`EvaluationReport`."""

    event: ClassVar[str] = "evaluation"

    @classmethod
    def of(cls, report: EvaluationReport) -> Evaluation:
        """The event that reports ``report``."""
        return cls(**report.to_dict())


@dataclass(frozen=True)
class Finished(Event):
    """The run has ended with the best adapter at ``path``.

    ``status`` is "completed", "early_stopped" (validation stopped improving) or "stopped" (asked to);
    ``validation`` and ``measured_on`` repeat what the best score was measured on.
    """

    event: ClassVar[str] = "finished"
    terminal: ClassVar[bool] = True

    status: str
    path: str
    best_score: float | None
    validation: str
    measured_on: str


@dataclass(frozen=True)
class Error(Event):
    """The run failed: ``kind`` is "bad_input", "out_of_memory", "cluster" (a Dask cluster was not reached
    or lost the run) or "crash"; ``message`` says what to do."""

    event: ClassVar[str] = "error"
    terminal: ClassVar[bool] = True
    kind: str
    message: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.event: cls
    for cls in (Started, Prepared, Baseline, Progress, Best, Evaluating, Evaluation, Finished, Error)
}


def event_from_json(line: str) -> Event | None:
    """The event on a JSON line; None for a line that is no event or an event this version does not know.

    An event of a known kind that cannot be read (from a newer version, or damaged) becomes an
    :class:`Error` of kind "crash" that says so.
    """
    try:
        values = json.loads(line)
    except ValueError:
        return None
    cls = EVENT_TYPES.get(values.pop("event", None)) if isinstance(values, dict) else None
    if cls is None:
        return None
    version = values.pop("version", 1)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]  # every event is a dataclass
    try:
        return cls.from_values({key: value for key, value in values.items() if key in known})
    except (TypeError, ValueError) as error:
        if isinstance(version, int) and version > cls.version:
            why = (
                f"version {version}, newer than this napari-sam-peft reads ({cls.version}): install the same "
                "napari-sam-peft version for napari and for training"
            )
        else:
            why = f"which this napari-sam-peft cannot read ({error})"
        return Error("crash", f"The training process sent a {cls.event!r} event of {why}.")


def error_event(error: BaseException, device: str = "", adapter: Path | None = None) -> Error:
    """The :class:`Error` event for an exception: what happened and what to do, in one message."""
    import torch

    kept = f" The last good adapter is unchanged: {adapter}." if adapter is not None and adapter.exists() else ""
    if isinstance(error, torch.OutOfMemoryError | MemoryError) or "out of memory" in str(error).lower():
        where = f" on {device}" if device else ""
        return Error(
            "out_of_memory",
            f"Training ran out of memory{where}. Choose a preset that adapts fewer or later blocks "
            f"(late_lora, late_ft, freeze_encoder) or fewer objects per image, and start again.{kept}",
        )
    if isinstance(error, ClusterError):
        return Error("cluster", f"{error}{kept}" if kept and "adapter" not in str(error) else str(error))
    if isinstance(error, SamPeftError):
        return Error("bad_input", f"{error}{kept}")
    return Error("crash", f"Training failed: {type(error).__name__}: {error}.{kept}")
