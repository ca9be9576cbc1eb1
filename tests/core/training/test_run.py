"""The training job and its worker process: events, stop, kill, errors, cache reuse, torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.data.sample_data import make_sample, make_series
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.peft import Adapter
from napari_sam_peft.core.training.events import Event, error_event
from napari_sam_peft.core.training.job import TrainingJob
from napari_sam_peft.core.training.run import run_job
from napari_sam_peft.core.training.runs import list_runs, runs_dir
from napari_sam_peft.core.training.worker import TrainingProcess


@pytest.fixture
def store(tmp_path):
    store = AnnotationStore.create(tmp_path / "cells.sampeft.zarr")
    for seed, split in ((1, "train"), (2, "val")):
        sample = make_sample("cells", seed=seed)
        store.add_labels(sample.image, sample.labels, split=split)
    return store


def _job(store, **overrides) -> TrainingJob:
    values = dict(
        store=store.path,
        model="demo",
        preset="late_lora",
        blocks="last 1",
        steps=4,
        validate_every=2,
        objects_per_image=4,
    )
    values.update(overrides)
    return TrainingJob(**values)


def _run_until(process: TrainingProcess, predicate, timeout: float = 120) -> list[Event]:
    seen: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = process.poll()
        seen += events
        if any(predicate(e) for e in events) or process.terminal_event is not None:
            return seen
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"timed out; events so far: {[e.event for e in seen]}")


def test_a_run_in_the_worker_reports_events_and_writes_a_loadable_adapter(store):
    process = TrainingProcess(_job(store, evaluate=True)).start()
    events = _run_until(process, lambda e: e.event == "finished")
    assert process.wait(30) == 0
    kinds = [e.event for e in events]
    assert kinds[0] == "started" and kinds[1] == "prepared" and kinds[-1] == "finished"
    progress = [e for e in events if e.event == "progress"]
    assert [e.step for e in progress] == [1, 2, 3, 4]
    assert {"loss", "val_score", "its_per_second", "eta_seconds"} <= set(progress[0].values())
    evaluation = next(e for e in events if e.event == "evaluation")
    assert set(evaluation.base) == {"point", "box", "i_p", "i_b", "n_objects"}
    adapter = Adapter.load(process.path)
    assert adapter.spec.preset == "late_lora" and adapter.spec.blocks == (3,)
    (record,) = list_runs(store.path)
    assert record.status == "completed" and record.best_step == adapter.metrics["step"]
    assert process.path.parent.parent == runs_dir(store.path)


def test_stop_keeps_the_best_adapter_and_ends_cleanly(store):
    process = TrainingProcess(_job(store, steps=500)).start()
    _run_until(process, lambda e: e.event == "best")
    process.stop()
    events = _run_until(process, lambda e: e.event == "finished")
    assert process.wait(30) == 0
    assert events[-1].status == "stopped"
    assert Adapter.load(process.path).spec.preset == "late_lora"
    assert list_runs(store.path)[0].status == "stopped"


def test_killing_the_worker_is_reported_and_leaves_the_last_adapter_whole(store):
    process = TrainingProcess(_job(store, steps=500)).start()
    _run_until(process, lambda e: e.event == "best")
    process.kill()
    events = _run_until(process, lambda e: e.event == "error")
    error = events[-1]
    assert error.kind == "crash" and "killed" in error.message
    assert str(process.path) in error.message
    Adapter.load(process.path)  # the last best adapter is intact


def test_out_of_memory_in_the_worker_is_an_error_event_with_advice(store):
    env = dict(os.environ, NAPARI_SAM_PEFT_TEST_FAULT="oom")
    process = TrainingProcess(_job(store, steps=20), env=env).start()
    events = _run_until(process, lambda e: e.event == "error")
    assert process.wait(30) == 3
    assert events[-1].kind == "out_of_memory"
    assert "late_lora" in events[-1].message and "last good adapter" in events[-1].message
    assert list_runs(store.path)[0].status == "failed"


def test_a_store_without_training_objects_is_a_bad_input_event(tmp_path):
    empty = AnnotationStore.create(tmp_path / "empty.sampeft.zarr")
    process = TrainingProcess(_job(empty)).start()
    events = _run_until(process, lambda e: e.event == "error")
    assert process.wait(30) == 2
    assert events[-1].kind == "bad_input" and "commit objects" in events[-1].message


def test_error_events_name_the_kind():
    import torch

    assert error_event(torch.OutOfMemoryError("CUDA out of memory"), "cuda").kind == "out_of_memory"
    assert error_event(MemoryError()).kind == "out_of_memory"
    assert error_event(ValueError("boom")).message == "Training failed: ValueError: boom."


def test_frozen_encoder_training_reuses_the_annotators_embeddings(store, tmp_path):
    from napari_sam_peft.core.sam.loading import load_model
    from napari_sam_peft.session import AnnotatorSession

    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.set_model(load_model("demo"))
    train_image = next(store.image(i.image_id) for i in store.snapshot().images if i.split == "train")
    session.compute_embeddings(train_image)  # what annotating this image left in the cache

    events: list[Event] = []
    job = _job(store, preset="freeze_encoder", blocks=None, steps=2, cache_dir=tmp_path / "cache")
    run_job(job, events.append)
    prepared = next(e for e in events if e.event == "prepared")
    assert prepared.first_trained_stage == 4 + 2  # past the neck: embeddings only
    assert (prepared.reused, prepared.computed) == (1, 0)
    # the validation image's embedding was added to the cache for the annotator
    val_image = next(store.image(i.image_id) for i in store.snapshot().images if i.split == "val")
    assert session.embedding_key(val_image) in session.cache


def test_train_runs_under_torchrun_with_two_processes(store, tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    out = tmp_path / "ddp.safetensors"
    result = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "napari_sam_peft.cli",
            "train",
            str(store.path),
            "--model",
            "demo",
            "--preset",
            "late_lora",
            "--blocks",
            "last 1",
            "--steps",
            "2",
            "--validate-every",
            "1",
            "--objects-per-image",
            "2",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--events",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    started = [e for e in events if e["event"] == "started"]
    assert len(started) == 1 and started[0]["world_size"] == 2  # only rank 0 reports
    assert events[-1]["event"] == "finished"
    Adapter.load(out)


def test_the_worker_runs_the_cli_entry_point(store):
    process = TrainingProcess(_job(store))
    assert process.command[:4] == [sys.executable, "-m", "napari_sam_peft.cli", "train"]
    assert "--events" in process.command


# ------------------------------------------------------------------ what validation is measured on
def _train_only_store(tmp_path, samples) -> AnnotationStore:
    store = AnnotationStore.create(tmp_path / "train_only.sampeft.zarr")
    for image, labels in samples:
        store.add_labels(image, labels, split="train")
    return store


@pytest.fixture
def trained_on(monkeypatch):
    """The training and validation samples that ``train`` receives (it still runs)."""
    from napari_sam_peft.core.training import loop as training

    calls: list[tuple[list, list]] = []
    real = training.train

    def spy(model, spec, train_samples, val_samples=(), *args, **kwargs):
        calls.append((list(train_samples), list(val_samples)))
        return real(model, spec, train_samples, val_samples, *args, **kwargs)

    monkeypatch.setattr(training, "train", spy)
    return calls


def _contains(samples, image) -> bool:
    return any(s[0].shape == image.shape and np.array_equal(s[0], image) for s in samples)


def test_without_a_validation_split_objects_of_the_few_images_are_held_out(tmp_path, trained_on):
    samples = [(s.image, s.labels) for s in make_series("cells", 3, shape=(128, 128))]
    store = _train_only_store(tmp_path, samples)
    events: list[Event] = []
    record = run_job(_job(store, steps=2, evaluate=True, seed=1), events.append)
    started = events[0]
    assert started.validation == "held out automatically"
    assert "objects of 3 training images" in started.measured_on
    assert started.train_images == 3  # no image is lost to training
    held_ids = set(record.validation["held_out_objects"])
    stored = {o.object_id for i in store.snapshot().images for o in i.objects}
    assert held_ids and held_ids <= stored and started.val_objects == len(held_ids)
    ((train_samples, val_samples),) = trained_on
    train_objects = sum(len(np.unique(labels)) - 1 for _, labels in train_samples)
    assert train_objects + len(held_ids) == len(stored)
    evaluation = next(e for e in events if e.event == "evaluation")
    assert evaluation.validation == "held out automatically"
    assert evaluation.base["n_objects"] == evaluation.objects == len(held_ids)
    (saved,) = list_runs(store.path)
    assert saved.validation["validation"] == saved.evaluation.validation == "held out automatically"
    assert events[-1].validation == "held out automatically"


def test_one_training_image_holds_out_some_of_its_objects(tmp_path, trained_on):
    sample = make_sample("cells", seed=4, shape=(128, 128))
    store = _train_only_store(tmp_path, [(sample.image, sample.labels)])
    events: list[Event] = []
    record = run_job(_job(store, steps=2), events.append)
    started = events[0]
    assert started.validation == "held out automatically" and "objects" in started.measured_on
    ((train_samples, val_samples),) = trained_on
    ((_, train_labels),), ((_, val_labels),) = train_samples, val_samples
    kept = set(np.unique(train_labels)) - {0}
    held = set(np.unique(val_labels)) - {0}
    assert held and kept and not held & kept
    assert held | kept == set(np.unique(sample.labels)) - {0}
    assert (started.train_objects, started.val_objects) == (len(kept), len(held))
    (image,) = store.snapshot().images
    assert set(record.validation["held_out_objects"]) <= {o.object_id for o in image.objects}
    assert len(record.validation["held_out_objects"]) == len(held)


def test_a_single_object_is_validated_on_the_training_data_and_says_so(tmp_path):
    sample = make_sample("cells", seed=4)
    labels = (sample.labels == sample.labels.max()).astype(np.uint16)
    store = _train_only_store(tmp_path, [(sample.image, labels)])
    events: list[Event] = []
    record = run_job(_job(store, steps=2, evaluate=True, validate_every=1), events.append)
    assert events[0].validation == "training data" and "nothing could be held out" in events[0].measured_on
    assert record.validation["validation"] == "training data"
    assert record.evaluation.validation == "training data"
    assert "training data" in record.evaluation.measured_on
    assert list_runs(store.path)[0].validation["validation"] == "training data"


def test_a_validation_split_is_named_as_such(store, trained_on):
    events: list[Event] = []
    record = run_job(_job(store, steps=2), events.append)
    assert events[0].validation == record.validation["validation"] == "validation split"
    assert record.validation["held_out_images"] == record.validation["held_out_objects"] == []
    ((train_samples, val_samples),) = trained_on
    val_image = next(store.image(i.image_id) for i in store.snapshot().images if i.split == "val")
    assert _contains(val_samples, val_image) and not _contains(train_samples, val_image)
