"""One finetuning run, from a store snapshot to adapter files, reported as structured events.

This is the single entry point behind ``napari-sam-peft train``: the Finetune widget starts
it in a separate process (see :mod:`.worker`), a terminal runs it directly, and ``torchrun``
runs it on several GPUs. Events are plain dicts (JSON lines on the worker's stdout):

``started``     run folder, adapter path, method, trainable parameters, device, steps, world size, and
                what validation uses (see below)
``prepared``    the frozen encoder stages have run on every image (seconds, reused embeddings)
``progress``    step, steps, loss, val_score, best_score, its_per_second, eta_seconds
``best``        a new best adapter was written (path, step, score)
``evaluating``  images, validation, measured_on: base vs adapter evaluation begins (when asked for)
``evaluation``  base vs adapter mSA (base, adapter), validation, measured_on, images, objects
``finished``    status "completed" | "stopped" | "early_stopped", path, best_score, validation, measured_on
``error``       kind "bad_input" | "out_of_memory" | "crash", message (see :func:`error_event`)

Validation (best score, early stopping) and evaluation never silently use the training images:
``validation`` is "validation split" | "held out automatically" | "training data" (only one training
object: nothing could be held out), ``measured_on`` says it in a sentence, and ``started`` (like the
run record's ``validation``) also counts train_images, train_objects, val_images, val_objects and
names the store's held_out_images / held_out_objects (see :mod:`.holdout`).

Every adapter is written atomically, so the file at ``path`` is always the last good one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..annotation.embeddings import EmbeddingCache
from ..annotation.stage_inputs import CacheEmbeddingSource
from ..atomic import write_atomic
from ..errors import SamPeftError
from .distributed import setup_distributed
from .holdout import plan_validation

Emit = Callable[[dict[str, Any]], None]

#: test hook: "oom" makes the run fail with an out-of-memory error at its second step
FAULT_ENV = "NAPARI_SAM_PEFT_TEST_FAULT"


@dataclass
class TrainingJob:
    """Everything a run needs; it round-trips through ``napari-sam-peft train`` arguments."""

    store: Path
    model: str
    preset: str
    out: Path | None = None  # default: a new run folder next to the store
    blocks: str | None = None
    rank: int | None = None
    lr: float = 1e-5
    steps: int = 200
    objects_per_image: int = 8
    validate_every: int = 25
    device: str = "auto"
    seed: int = 0
    cache_dir: Path | None = None  # the annotator's embedding cache, reused by frozen-encoder presets
    evaluate: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved_out(self) -> Path:
        if self.out is None:
            self.out = new_run_dir(self.store, self.preset) / "adapter.safetensors"
        return Path(self.out)

    def to_argv(self) -> list[str]:
        argv = [
            str(self.store),
            "--model",
            str(self.model),
            "--preset",
            self.preset,
            "--out",
            str(self.resolved_out()),
        ]
        argv += [
            "--lr",
            repr(self.lr),
            "--steps",
            str(self.steps),
            "--device",
            self.device,
            "--seed",
            str(self.seed),
        ]
        argv += ["--objects-per-image", str(self.objects_per_image), "--validate-every", str(self.validate_every)]
        if self.blocks:
            argv += ["--blocks", self.blocks]
        if self.rank is not None:
            argv += ["--rank", str(self.rank)]
        if self.cache_dir is not None:
            argv += ["--cache-dir", str(self.cache_dir)]
        if self.evaluate:
            argv.append("--evaluate")
        return argv


def model_argument(model) -> str:
    """How a separate process names the same base model: 'demo', a registry name or a file."""
    from ..sam.loading import DEMO_MODEL_NAME, registry_model_names

    if model.identity.name == DEMO_MODEL_NAME:
        return DEMO_MODEL_NAME
    if model.source in registry_model_names() or Path(model.source).is_file():
        return model.source
    raise SamPeftError(
        "This model was built in memory, so a training process cannot load it: save it with "
        "napari_sam_peft.core.save_model and load that file."
    )


def runs_dir(store: str | os.PathLike[str]) -> Path:
    """Where the runs of a store live: ``cells.sampeft.zarr`` -> ``cells.adapters/`` beside it."""
    store = Path(store)
    stem = store.name.removesuffix(".zarr").removesuffix(".sampeft")
    return store.parent / f"{stem}.adapters"


def new_run_dir(store: str | os.PathLike[str], preset: str) -> Path:
    base = runs_dir(store) / f"{datetime.now():%Y%m%d-%H%M%S}-{preset}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def list_runs(store: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The recorded runs of a store, newest first (each ``run.json`` plus its folder)."""
    found = []
    for record in sorted(runs_dir(store).glob("*/run.json"), reverse=True):
        try:
            values = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        values["run_dir"] = str(record.parent)
        found.append(values)
    return found


def _write_json(path: Path, values: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(values, indent=1, default=str))


def error_event(error: BaseException, device: str = "", adapter: Path | None = None) -> dict[str, Any]:
    """The ``error`` event for an exception: what happened and what to do, in one message."""
    kept = f" The last good adapter is unchanged: {adapter}." if adapter is not None and adapter.exists() else ""
    if isinstance(error, torch.OutOfMemoryError | MemoryError) or "out of memory" in str(error).lower():
        where = f" on {device}" if device else ""
        return {
            "event": "error",
            "kind": "out_of_memory",
            "message": f"Training ran out of memory{where}. Choose a preset that adapts fewer or later blocks "
            f"(late_lora, late_ft, freeze_encoder) or fewer objects per image, and start again.{kept}",
        }
    if isinstance(error, SamPeftError):
        return {"event": "error", "kind": "bad_input", "message": f"{error}{kept}"}
    return {
        "event": "error",
        "kind": "crash",
        "message": f"Training failed: {type(error).__name__}: {error}.{kept}",
    }


def run_job(job: TrainingJob, emit: Emit, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train as ``job`` says, writing each new best adapter to ``job.out``; returns the run record.

    Raises
    ------
    SamPeftError
        For bad input (no training objects, a bad store, preset or blocks).
    """
    from segment_anything import SamPredictor

    from ..data.store import AnnotationStore
    from ..evaluation.interactive import evaluate_interactive
    from ..peft import count_trainable_parameters, spec_from_preset
    from ..sam.loading import load_model
    from .loop import TrainingConfig, train

    rank, world, device = setup_distributed(job.device)
    lead = rank == 0
    out = job.resolved_out()
    if out.suffix != ".safetensors":
        raise SamPeftError(f"The adapter file must end in .safetensors, not {out.name!r}.")
    store = AnnotationStore(job.store)
    snapshot = store.snapshot()
    stored = {split: [i for i in snapshot.images if i.split == split and i.objects] for split in ("train", "val")}
    if not stored["train"]:
        raise SamPeftError(
            "The store has no annotated training images: "
            "commit objects on at least one image in the training split."
        )
    plan = plan_validation(
        *([(store.image(i.image_id), store.labels(i)) for i in stored[split]] for split in ("train", "val")),
        seed=job.seed,
    )
    validation = {  # labels number an image's objects 1..n in commit order
        **plan.summary(),
        "held_out_images": [stored["train"][i].image_id for i in plan.held_out_images],
        "held_out_objects": [stored["train"][img].objects[i - 1].object_id for img, i in plan.held_out_objects],
    }
    train_samples = (plan.train[rank::world] or plan.train) if world > 1 else plan.train
    model = load_model(job.model, device=device)
    overrides = {"rank": job.rank} if job.rank is not None else {}
    spec = spec_from_preset(job.preset, model.architecture.depth, blocks=job.blocks, **overrides)
    out.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "job": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()},
        "preset": job.preset,
        "method": spec.describe(model.architecture.depth),
        "adapter": str(out),
        "status": "running",
        "started": datetime.now().isoformat(timespec="seconds"),
        "snapshot": snapshot.snapshot_id,
        "best_score": None,
        "best_step": None,
        "curve": [],
        "validation": validation,
        "evaluation": None,
        "world_size": world,
    }
    record_path = out.parent / "run.json"

    def save_record() -> None:
        if lead:
            _write_json(record_path, record)

    save_record()
    say = emit if lead else (lambda _event: None)
    say(
        {
            "event": "started",
            "run_dir": str(out.parent),
            "path": str(out),
            "preset": job.preset,
            "method": record["method"],
            "trainable_params": count_trainable_parameters(spec, model.architecture),
            **validation,
            "device": str(model.device),
            "steps": job.steps,
            "world_size": world,
        }
    )
    source = None
    if job.cache_dir is not None:
        source = CacheEmbeddingSource(EmbeddingCache(job.cache_dir), model)
    prepared_at = time.perf_counter()

    def on_prepared(inputs) -> None:
        say(
            {
                "event": "prepared",
                "seconds": time.perf_counter() - prepared_at,
                "first_trained_stage": inputs.stage,
                "computed": inputs.computed,
                "reused": inputs.reused,
            }
        )

    def on_event(event) -> None:
        if os.environ.get(FAULT_ENV) == "oom" and event.step >= 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test hook)")
        values = {"event": "progress", **asdict(event)}
        if not np.isfinite(values["eta_seconds"]):
            values["eta_seconds"] = None
        record["curve"].append([event.step, event.loss, event.val_score])
        say(values)

    def on_best(adapter) -> None:
        adapter.save(out)
        record["best_score"] = adapter.metrics["val_box_iou"]
        record["best_step"] = adapter.metrics["step"]
        save_record()
        say({"event": "best", "path": str(out), "step": record["best_step"], "score": record["best_score"]})

    stopped = False

    def stop_requested() -> bool:
        nonlocal stopped
        stopped = stopped or (should_stop is not None and should_stop())
        return stopped

    try:
        config = TrainingConfig(
            steps=job.steps,
            lr=job.lr,
            objects_per_image=job.objects_per_image,
            validate_every=job.validate_every,
            seed=job.seed,
        )
        best = train(
            model,
            spec,
            train_samples,
            () if plan.on_training_data else plan.val,  # train() then reuses the training inputs
            config,
            on_event=on_event,
            should_stop=stop_requested,
            on_best=on_best,
            training_snapshot=snapshot.snapshot_id,
            embedding_source=source,
            on_prepared=on_prepared,
        )
    except BaseException as error:
        record["status"] = "failed" if not isinstance(error, KeyboardInterrupt) else "stopped"
        record["error"] = str(error)
        save_record()
        raise
    last_step = record["curve"][-1][0] if record["curve"] else 0
    record["status"] = "stopped" if stopped else "completed" if last_step >= job.steps else "early_stopped"
    if job.evaluate and lead:
        measured_on = {"validation": plan.validation, "measured_on": plan.description}
        say({"event": "evaluating", "images": len(plan.val), **measured_on})
        base = evaluate_interactive(SamPredictor(model.sam), plan.val)
        handle = best.attach_to(model)
        try:
            adapted = evaluate_interactive(SamPredictor(model.sam), plan.val)
        finally:
            handle.detach()
        counts = {"images": validation["val_images"], "objects": validation["val_objects"]}
        record["evaluation"] = {**measured_on, **counts, "base": base, "adapter": adapted}
        say({"event": "evaluation", **record["evaluation"]})
    record["finished"] = datetime.now().isoformat(timespec="seconds")
    save_record()
    finished = {"status": record["status"], "path": str(out), "best_score": record["best_score"]}
    say({"event": "finished", **finished, "validation": plan.validation, "measured_on": plan.description})
    return record
