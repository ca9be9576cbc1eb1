"""Running a training job: error events, cache reuse, what validation is measured on."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.data.sample_data import make_sample, make_series
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.peft import Adapter
from napari_sam_peft.core.training.events import Event, error_event
from napari_sam_peft.core.training.job import TrainingJob
from napari_sam_peft.core.training.run import run_job
from napari_sam_peft.core.training.runs import list_runs
from tests.core.training.conftest import _job


def test_error_events_name_the_kind():
    import torch

    assert error_event(torch.OutOfMemoryError("CUDA out of memory"), "cuda").kind == "out_of_memory"
    assert error_event(MemoryError()).kind == "out_of_memory"
    assert error_event(ValueError("boom")).message == "Training failed: ValueError: boom."


def test_frozen_encoder_training_reuses_the_annotators_embeddings(store, tmp_path):
    from napari_sam_peft.core.sam.loading import load_model
    from napari_sam_peft.session import AnnotatorSession

    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(load_model("demo"))
    train_image = next(store.image(i.image_id) for i in store.snapshot().images if i.split == "train")
    session.embeddings.compute(train_image)  # what annotating this image left in the cache

    events: list[Event] = []
    job = _job(store, preset="freeze_encoder", blocks=None, steps=2, cache_dir=tmp_path / "cache")
    run_job(job, events.append)
    prepared = next(e for e in events if e.event == "prepared")
    assert prepared.first_trained_stage == 4 + 2  # past the neck: embeddings only
    assert (prepared.reused, prepared.computed) == (1, 0)
    # the validation image's embedding was added to the cache for the annotator
    val_image = next(store.image(i.image_id) for i in store.snapshot().images if i.split == "val")
    assert session.embeddings.key(val_image) in session.embeddings.cache


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


def test_without_a_step_count_the_run_takes_the_recommended_one_and_says_so(store):
    from napari_sam_peft.core.peft.recommend import recommended_steps
    from napari_sam_peft.core.training.recipe import CPU

    events: list[Event] = []
    # stopped at once: only the resolved settings matter here
    record = run_job(_job(store, steps=None), events.append, should_stop=lambda: True)
    started = events[0]
    assert started.steps_chosen == "recommended"
    assert started.steps == recommended_steps(started.train_objects, 4, CPU.passes_over_objects) >= 100
    assert started.recipe == "cpu" and started.recipe_summary.startswith(CPU.summary)
    assert record.steps == started.steps and record.lr == started.lr  # what the run took, as it said
    assert record.recipe == "cpu"
    given = TrainingJob.from_json(record.job)  # the job as the user gave it
    assert given.steps is None and given.store == store.path
    assert record.status == "stopped"

    events.clear()
    run_job(_job(store, steps=3), events.append, should_stop=lambda: True)
    assert (events[0].steps, events[0].steps_chosen) == (3, "given")


def test_a_negative_step_count_is_refused_before_anything_loads(store):
    from napari_sam_peft.core.errors import SamPeftError
    from napari_sam_peft.core.training.runs import runs_dir

    with pytest.raises(SamPeftError, match="steps must be positive, not -5; leave it out"):
        run_job(_job(store, steps=-5), lambda event: None)
    assert not runs_dir(store.path).exists()  # no empty run folder left behind


@pytest.mark.slow
def test_a_run_with_the_decoder_evaluates_automatic_segmentation_before_and_after(tmp_path):
    sample = make_sample("cells", seed=4, shape=(128, 128))
    store = _train_only_store(tmp_path, [(sample.image, sample.labels.astype(np.uint16))])
    events: list[Event] = []
    record = run_job(_job(store, steps=2, evaluate=True, validate_every=1, with_decoder=True), events.append)
    evaluation = record.evaluation
    assert 0.0 <= evaluation.base["ais"] <= 1.0 and 0.0 <= evaluation.adapter["ais"] <= 1.0
    assert [row.metric for row in evaluation.rows()][-1] == "AIS"  # the widget's table gains the row
    assert Adapter.load(record.adapter).has_decoder
