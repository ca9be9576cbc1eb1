"""The loop without Qt: the session opens an image (or a volume), segments a box, commits, trains on this
machine in a worker process, hot-reloads the new adapter, and the same box then gives another mask."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.sample_volume import make_volume
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.sam.loading import load_model
from napari_sam_peft.core.training.events import Best, Finished
from napari_sam_peft.core.training.job import TrainingJob
from napari_sam_peft.session import AnnotatorSession
from napari_sam_peft.session.volume_annotator import VolumeAnnotator

pytestmark = pytest.mark.slow  # each test trains in a worker process


@pytest.fixture
def session(tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"), default_store=lambda: None)
    session.model.set_base(load_model("demo", device="cpu"))
    session.annotations.open_store(tmp_path / "loop.sampeft.zarr")
    return session


def _box(labels: np.ndarray, obj: int) -> np.ndarray:
    """The box around object ``obj``, as the ``prompts`` layer gives it: (row0, col0, row1, col1)."""
    rows, cols = np.nonzero(labels == obj)
    return np.array([rows.min() - 2, cols.min() - 2, rows.max() + 2, cols.max() + 2], dtype=float)


def _job(session, **values) -> TrainingJob:
    settings = dict(preset="late_lora", blocks="last 2", steps=8, validate_every=2, objects_per_image=4,
                    evaluate=False, with_decoder=False, lr=5e-3)  # fmt: skip
    settings.update(values)
    return TrainingJob(store=session.annotations.store.path, model="demo", **settings)


def test_the_loop_runs_without_qt_box_commit_train_reload_and_another_mask(session):
    sample = make_sample("cells", seed=1)
    shown = session.open("cells 1", sample.image)
    shown.embed(lambda: 0)
    labels = session.annotations.open_image("cells 1", sample.image).labels
    for obj in range(1, 7):
        prompts = ObjectPrompts(box=_box(sample.labels, obj))
        (mask,) = shown.segment([prompts])
        session.annotations.commit(
            "cells 1", sample.image, labels, (sample.labels == obj).astype(np.uint32), [prompts]
        )
    before = mask.copy()
    held_out = make_sample("cells", seed=2)
    session.annotations.store.add_labels(held_out.image, held_out.labels, split="val")

    seen = []
    session.training.event.connect(seen.append)
    session.training.start(_job(session))
    with pytest.raises(SamPeftError, match="already going"):
        session.training.start(_job(session))
    end = session.training.wait(timeout=600)

    assert isinstance(end, Finished) and end.status == "completed", end
    assert any(isinstance(event, Best) for event in seen)
    assert session.model.reloads >= 1 and session.model.adapter is not None
    assert session.model.adapter_path == session.training.process.path
    assert not shown.ready  # its embeddings were the base model's
    shown.embed(lambda: 0)  # the shown image again, with the live adapter
    (after,) = shown.segment([prompts])
    assert after.shape == before.shape and not np.array_equal(after, before)


def test_start_without_training_objects_says_what_to_do(session):
    sample = make_sample("cells", seed=3)
    session.annotations.store.add_labels(sample.image, sample.labels, split="val")
    with pytest.raises(SamPeftError, match="on validation images: set one image's split to 'train'"):
        session.training.start(_job(session))
    assert session.training.process is None


def test_the_loop_on_a_volume_propagates_another_object_after_the_reload(session):
    sample = make_volume(seed=0, shape=(12, 128, 128))
    annotator = session.open("stack", sample.image)
    assert isinstance(annotator, VolumeAnnotator)
    annotator.embed(lambda: 6)
    labels = session.annotations.open_image("stack", sample.image, volume=True).labels
    ids = [int(i) for i in np.unique(sample.labels[6]) if i]
    for obj in ids[:3]:
        prompts = ObjectPrompts(box=_box(sample.labels[6], obj), slice=6)
        assert annotator.propagate_prompts({6: prompts}).mask[6].any()
        session.annotations.commit(
            "stack", sample.image, labels, (sample.labels == obj).astype(np.uint32), [prompts]
        )
    seed = {6: sample.labels[6] == ids[0]}  # the object's true outline on its middle slice, carried through z
    before = annotator.propagate(seed).mask.copy()

    session.training.start(_job(session, validate_every=4, lr=None))
    end = session.training.wait(timeout=600)

    assert isinstance(end, Finished), end
    assert session.model.reloads >= 1
    annotator.embed(lambda: 6)  # the slices again, with the live adapter
    after = annotator.propagate(seed).mask
    assert after.shape == before.shape and not np.array_equal(after, before)
