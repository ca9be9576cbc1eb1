"""Run folders next to a store, and the record of each run in them (``run.json``).

``cells.sampeft.zarr`` -> ``cells.adapters/20261126-101500-late_lora/`` holding ``adapter.safetensors``
(the best adapter so far) and ``run.json`` (:class:`RunRecord`: settings, status, curve, best step and
score, the store snapshot, what validation was measured on, the evaluation). The record is rewritten
atomically, so a reader always sees a whole one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..evaluation.report import EvaluationReport

RECORD_NAME = "run.json"


def runs_dir(store: str | os.PathLike[str]) -> Path:
    """Where the runs of a store live: ``cells.sampeft.zarr`` -> ``cells.adapters/`` beside it."""
    store = Path(store)
    stem = store.name.removesuffix(".zarr").removesuffix(".sampeft")
    return store.parent / f"{stem}.adapters"


def new_run_dir(store: str | os.PathLike[str], preset: str) -> Path:
    """Make and return a new, empty run folder for ``preset``: its name is the time and the preset."""
    base = runs_dir(store) / f"{datetime.now():%Y%m%d-%H%M%S}-{preset}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def now() -> str:
    """The time as run records write it (ISO 8601, seconds)."""
    return datetime.now().isoformat(timespec="seconds")


@dataclass(kw_only=True)
class RunRecord:
    """What ``run.json`` says about one run; the fields are its keys.

    ``job`` is the :class:`~.job.TrainingJob` as the user gave it (``TrainingJob.from_json`` reads it back);
    ``lr`` and ``steps`` what the run took (the job's, or the recommended ones). ``curve`` holds
    ``[step, loss, val_score]`` rows; ``validation`` is what validation was measured on (see
    :meth:`.holdout.ValidationPlan.summary`, with the store ids held out); ``run_dir`` is the folder the
    record was read from (not written).
    """

    job: dict[str, Any] = field(default_factory=dict)  # TrainingJob.to_json()
    lr: float | None = None
    steps: int | None = None
    preset: str = ""
    method: str = ""
    adapter: str
    status: str = "running"
    started: str = ""
    snapshot: str = ""
    best_score: float | None = None
    best_step: int | None = None
    curve: list[list[Any]] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    evaluation: EvaluationReport | None = None
    world_size: int = 1
    #: the precision it trained in (fp32, bf16, fp16); "" in records written before precision was chosen
    precision: str = ""
    #: the recipe it trained by (paper, cpu: ``.recipe``); "" in records written before recipes
    recipe: str = ""
    error: str | None = None
    finished: str | None = None
    #: where it trained: "" on this machine; for a Dask cluster a sentence naming the scheduler and worker
    ran_on: str = ""
    #: a cluster run's scheduler ``address``, ``worker``, ``host``, ``run_id`` and ``folder`` on the worker
    remote: dict[str, str] = field(default_factory=dict)
    #: a continuation's parent: its ``adapter`` file and ``hash``, and what the steps drew (``replay``)
    parent: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.job, dict):  # a damaged record
            self.job = {}
        # records written before 2026-12-06 kept the steps and rate the run took in the job
        self.lr = self.lr if self.lr is not None else self.job.get("lr")
        self.steps = self.steps if self.steps is not None else self.job.get("steps")

    @property
    def model(self) -> str | None:
        """The base model the run trained (its name or file), or None where the record does not say."""
        model = self.job.get("model")
        return str(model) if model else None

    @property
    def store(self) -> Path | None:
        """The store the run trained on, or None where the record does not say."""
        store = self.job.get("store")
        return Path(store) if store else None

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready values written to ``run.json``."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "run_dir"}
        values["evaluation"] = self.evaluation.to_dict() if self.evaluation is not None else None
        return values

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the record to ``path`` atomically."""
        write_atomic(path, json.dumps(self.to_json(), indent=1, default=str))

    @classmethod
    def from_json(cls, values: Mapping[str, Any], run_dir: Path | None = None) -> RunRecord:
        """The record of ``run.json`` values; keys it does not know are ignored.

        Raises
        ------
        KeyError
            Without an ``adapter`` path.
        """
        known = {f.name for f in fields(cls)} - {"adapter", "evaluation", "run_dir"}
        evaluation = values.get("evaluation")
        return cls(
            **{key: value for key, value in values.items() if key in known},
            adapter=str(values["adapter"]),
            evaluation=EvaluationReport.from_dict(evaluation) if evaluation else None,
            run_dir=run_dir,
        )


def read_run(path: str | os.PathLike[str]) -> RunRecord:
    """The record in the ``run.json`` at ``path``.

    Raises
    ------
    OSError, ValueError, KeyError, TypeError
        If it cannot be read or is not a run record.
    """
    path = Path(path)
    return RunRecord.from_json(json.loads(path.read_text()), run_dir=path.parent)


def list_runs(store: str | os.PathLike[str]) -> list[RunRecord]:
    """The recorded runs of a store, newest first; unreadable records are left out."""
    found = []
    for path in sorted(runs_dir(store).glob(f"*/{RECORD_NAME}"), reverse=True):
        try:
            found.append(read_run(path))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found
