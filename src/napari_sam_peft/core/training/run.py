"""One finetuning run, from a store snapshot to adapter files, reported as events.

:func:`run_job` is the single entry point behind ``napari-sam-peft train``: the Finetune widget
starts it in a separate process (see :mod:`.worker`), a terminal runs it directly, and ``torchrun``
runs it on several GPUs. It reports the events of :mod:`.events` through ``emit`` and keeps the
run's :class:`~.runs.RunRecord` in ``run.json`` beside the adapter.

Validation (best score, early stopping) and evaluation never silently use the training images
(see :mod:`.holdout`): the ``started`` event, the record's ``validation`` and the ``finished``
event say what they were measured on. Every adapter is written atomically, so the file at
``path`` is always the last good one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..annotation.embeddings import EmbeddingCache
from ..annotation.stage_inputs import CacheEmbeddingSource, StageInputs
from ..data.store import AnnotationStore
from ..errors import SamPeftError
from ..peft import Adapter, PeftSpec, count_trainable_parameters
from ..sam.devices import select_device
from ..sam.loading import LoadedModel
from ..sam.precision import resolve_precision
from ..sam.precision_probe import measured_decoder_pass
from ..volume.store_slices import held_out_volumes, read_samples, z_ranges
from . import loop
from .continuation import Replay, check_parent, parent_summary, read_parent, replay_since, shard_weights
from .distributed import setup_distributed
from .estimate import estimate_training
from .events import Baseline, Best, Event, Finished, Prepared, Progress, Started
from .holdout import ValidationPlan, plan_validation, plan_z_range_validation
from .job import TrainingJob
from .plan import check_training_data, job_schedule
from .run_evaluation import evaluate_run
from .runs import RECORD_NAME, RunRecord, now

Emit = Callable[[Event], None]

#: test hook: "oom" makes the run fail with an out-of-memory error at its second step
FAULT_ENV = "NAPARI_SAM_PEFT_TEST_FAULT"


@dataclass
class TrainingData:
    """What a run trains and validates on: the store snapshot and the validation plan.

    ``validation`` is the plan's summary with the store ids of what was held out (the ``started``
    event's and the run record's ``validation``). ``volumes`` are the validation volumes, (pixels, 3D
    labels), that the evaluation scores in 3D: the validation split's, or each volume's held-out z-range.
    """

    snapshot_id: str
    plan: ValidationPlan
    validation: dict[str, Any]
    volumes: list[tuple[Any, np.ndarray]] = field(default_factory=list)
    replay: Replay | None = None


def load_training_data(
    store_path: str | os.PathLike[str], seed: int, parent_snapshot: str | None = None
) -> TrainingData:
    """Read the annotated images of a store and plan validation (seeded by ``seed``); with the snapshot id
    of a parent adapter (a continuation), also which training samples are new since (``replay``).

    Raises
    ------
    SamPeftError
        If the store has no annotated training images.
    """
    store = AnnotationStore(store_path)
    snapshot = store.snapshot()
    stored = {split: [i for i in snapshot.images if i.split == split and i.objects] for split in ("train", "val")}
    if not stored["train"]:
        check_training_data(store.info())
    (train, origins), (val, _) = (read_samples(store, stored[split]) for split in ("train", "val"))
    volume_plan = plan_z_range_validation(train, origins) if not val else None
    plan = volume_plan or plan_validation(train, val, seed=seed)
    held_images = [origins[i] for i in plan.held_out_images]
    by_id = {image.image_id: image for image in stored["train"]}
    validation = {  # labels number an image's (or volume's) objects 1..n in commit order
        **plan.summary(),
        "held_out_images": list(dict.fromkeys(origin.image_id for origin in held_images)),
        "held_out_objects": [
            by_id[origins[sample].image_id].objects[value - 1].object_id for sample, value in plan.held_out_objects
        ],
    }
    volumes: list[tuple[Any, np.ndarray]] = []
    if any(origin.z is not None for origin in held_images):
        validation["held_out_slices"] = z_ranges(origins, plan.held_out_images)
        volumes = held_out_volumes(store, stored["train"], validation["held_out_slices"])
    elif val:
        volumes = [(store.lazy_image(i.image_id), store.labels(i)) for i in stored["val"] if i.volume]
    replay = None
    if parent_snapshot is not None:
        replay = replay_since(store.snapshot_at(parent_snapshot), plan, origins, by_id)
    return TrainingData(snapshot.snapshot_id, plan, validation, volumes, replay)


@dataclass
class RunReporter:
    """Reports a run's events and keeps its record; in a distributed run only rank 0 (``lead``) does.

    ``should_stop`` is the caller's stop request; ``stopped`` says whether it came.
    """

    record: RunRecord
    out: Path
    emit: Emit
    lead: bool = True
    should_stop: Callable[[], bool] | None = None
    stopped: bool = False
    started_at: float = field(default_factory=time.perf_counter)

    def save(self) -> None:
        """Write the record to ``run.json`` beside the adapter (rank 0 only)."""
        if self.lead:
            self.record.save(self.out.parent / RECORD_NAME)

    def say(self, event: Event) -> None:
        """Report ``event`` (rank 0 only)."""
        if self.lead:
            self.emit(event)

    def stop_requested(self) -> bool:
        """Whether the caller asked to stop; once asked, it stays asked."""
        self.stopped = self.stopped or (self.should_stop is not None and self.should_stop())
        return self.stopped

    def on_prepared(self, inputs: StageInputs) -> None:
        """The loop ran the frozen stages on every image: report how long that took."""
        seconds = time.perf_counter() - self.started_at
        self.say(Prepared(seconds, inputs.stage, inputs.computed, inputs.reused))

    def on_baseline(self, score: float) -> None:
        """The validation score training starts from: report it."""
        self.say(Baseline(score))

    def on_progress(self, event: loop.TrainingEvent) -> None:
        """A step ended: add it to the curve and report it."""
        if os.environ.get(FAULT_ENV) == "oom" and event.step >= 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected by the test hook)")
        self.record.curve.append([event.step, event.loss, event.val_score])
        self.say(Progress.of(event))

    def on_best(self, adapter: Adapter) -> None:
        """Validation improved: write the adapter (atomically) and the record, and report it."""
        adapter.save(self.out)
        self.record.best_score = adapter.metrics["val_box_iou"]
        self.record.best_step = adapter.metrics["step"]
        self.save()
        self.say(Best(str(self.out), self.record.best_step, self.record.best_score))


def run_job(job: TrainingJob, emit: Emit, should_stop: Callable[[], bool] | None = None) -> RunRecord:
    """Train as ``job`` says, writing each new best adapter to ``job.out``; returns the run record.

    Raises
    ------
    SamPeftError
        For bad input (no training objects, a bad store, preset or blocks).
    """
    from ..sam.loading import check_instance_decoder_support, check_model_name, load_model

    check_model_name(job.model)  # a misspelt model is said before anything about the store
    if job.steps is not None and job.steps < 0:
        raise SamPeftError(
            f"The number of steps must be positive, not {job.steps}; leave it out for the recommended one."
        )
    resolve_precision(job.precision, select_device(job.device))  # a bad name: refused before a run folder
    if job.out is not None and Path(job.out).suffix != ".safetensors":
        raise SamPeftError(f"The adapter file must end in .safetensors, not {Path(job.out).name!r}.")
    parent = read_parent(job.from_adapter) if job.from_adapter is not None else None
    rank, world, device = setup_distributed(job.device)
    data = load_training_data(job.store, job.seed, parent.training_snapshot if parent is not None else None)
    model = load_model(job.model, device=device)
    if job.with_decoder:
        check_instance_decoder_support(model)
    spec = job.spec(model.architecture.depth)
    if parent is not None:
        check_parent(parent, Path(str(job.from_adapter)).name, model, spec)
    job = job.with_run_folder()  # the run folder is made once the input is known to be good
    out = job.adapter_path
    precision, frozen = loop.training_precisions(model, spec, job.precision)  # the probe decides auto
    new_objects = data.replay.new_objects if data.replay is not None else None
    schedule = job_schedule(
        job, spec.method, model.architecture, data.validation["train_objects"], model.device.type, new_objects
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    record = RunRecord(
        job=job.to_json(),
        lr=schedule.lr,
        steps=schedule.steps,
        preset=job.preset,
        method=spec.describe(model.architecture.depth),
        adapter=str(out),
        started=now(),
        snapshot=data.snapshot_id,
        validation=data.validation,
        world_size=world,
        precision=precision.name,
        recipe=schedule.recipe.name,
        parent=parent_summary(job.from_adapter, parent, data.replay),
    )
    reporter = RunReporter(record, out, emit, lead=rank == 0, should_stop=should_stop)
    reporter.save()
    reporter.say(
        Started(
            run_dir=str(out.parent),
            path=str(out),
            preset=job.preset,
            method=record.method,
            trainable_params=count_trainable_parameters(spec, model.architecture),
            **data.validation,
            device=str(model.device),
            steps=schedule.steps,
            world_size=world,
            lr=schedule.lr,
            lr_chosen=schedule.lr_chosen,
            steps_chosen=schedule.steps_chosen,
            recipe=schedule.recipe.name,
            recipe_summary=schedule.describe(),
            estimated_step_seconds=estimate_training(
                spec,
                model.architecture,
                str(model.device),
                schedule.objects_per_image,
                schedule.sub_iterations,
                decoder_pass_seconds=measured_decoder_pass(model.sam, precision.name),
            ).seconds_per_step,
            precision=precision.name,
            precision_reason=precision.reason,
            continued_from=record.parent,
        )
    )
    config = loop.TrainingConfig.of(job, schedule)
    best = _train(
        job, config, model, spec, data, reporter, shard=(rank, world), frozen_precision=frozen.name, parent=parent
    )
    last_step = record.curve[-1][0] if record.curve else 0
    record.status = (
        "stopped" if reporter.stopped else "completed" if last_step >= config.steps else "early_stopped"
    )
    if job.evaluate and reporter.lead and not reporter.stopped:  # a stop ends the run at once
        record.evaluation = evaluate_run(
            model, best, data.plan, data.validation, data.volumes, reporter.say, reporter.stop_requested
        )
    record.finished = now()
    reporter.save()
    plan = data.plan
    reporter.say(Finished(record.status, str(out), record.best_score, plan.validation, plan.description))
    return record


def _train(
    job: TrainingJob,
    config: loop.TrainingConfig,
    model: LoadedModel,
    spec: PeftSpec,
    data: TrainingData,
    reporter: RunReporter,
    shard: tuple[int, int],
    frozen_precision: str,
    parent: Adapter | None = None,
) -> Adapter:
    """Run the training loop on this rank's share of the images (from ``parent``'s tensors when it continues
    one); a failure is recorded, then raised."""
    rank, world = shard
    plan = data.plan
    train_samples = (plan.train[rank::world] or plan.train) if world > 1 else plan.train
    weights = shard_weights(data.replay.weights() if data.replay is not None else None, rank, world)
    source = None
    if job.cache_dir is not None:
        # the frozen stages run in the annotator's embedding precision, which the cache key names
        source = CacheEmbeddingSource(EmbeddingCache(job.cache_dir), model, frozen_precision)
    try:
        return loop.train(
            model,
            spec,
            train_samples,
            () if plan.on_training_data else plan.val,  # train() then reuses the training inputs
            config,
            loop.TrainingHooks(
                on_event=reporter.on_progress,
                on_best=reporter.on_best,
                on_prepared=reporter.on_prepared,
                on_baseline=reporter.on_baseline,
                should_stop=reporter.stop_requested,
            ),
            embedding_source=source,
            training_snapshot=data.snapshot_id,
            parent=parent,
            sample_weights=weights,
        )
    except BaseException as error:
        reporter.record.status = "failed" if not isinstance(error, KeyboardInterrupt) else "stopped"
        reporter.record.error = str(error)
        reporter.save()
        raise
