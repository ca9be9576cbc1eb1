"""Continuing a run from an adapter: its tensors, its lineage, what the steps draw, and the refusals."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft import Adapter
from napari_sam_peft.core.peft.adapter_file import AdapterMismatchError
from napari_sam_peft.core.peft.adapter_format import InvalidAdapterError
from napari_sam_peft.core.training.continuation import NEW_SHARE, Replay, continuation_steps
from napari_sam_peft.core.training.recipe import CPU
from napari_sam_peft.core.training.run import load_training_data, run_job
from napari_sam_peft.core.training.runs import list_runs, runs_dir
from tests.core.training.conftest import _job


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """A store like the ``store`` fixture's and round one's adapter on it, trained once for this module."""
    store = AnnotationStore.create(tmp_path_factory.mktemp("round_one") / "cells.sampeft.zarr")
    for seed, split in ((1, "train"), (2, "val")):
        sample = make_sample("cells", seed=seed)
        store.add_labels(sample.image, sample.labels, split=split)
    record = run_job(_job(store, steps=2, with_decoder=True), lambda event: None)
    return store.path, Path(record.adapter)


@pytest.fixture
def store(trained_once, tmp_path):
    """A copy of round one's store (the same journal: the parent's snapshot is found in it) for one test."""
    shutil.copytree(trained_once[0], tmp_path / "cells.sampeft.zarr")
    return AnnotationStore(tmp_path / "cells.sampeft.zarr")


@pytest.fixture
def parent(trained_once, tmp_path):
    """Round one: an adapter with an instance decoder, trained on the store's one training image."""
    copy = tmp_path / "round_one" / "adapter.safetensors"
    copy.parent.mkdir()
    shutil.copyfile(trained_once[1], copy)
    return copy


def _add_training_image(store, seed: int = 3) -> None:
    sample = make_sample("cells", seed=seed)
    store.add_labels(sample.image, sample.labels, split="train")


def test_the_store_finds_the_snapshot_an_adapter_was_trained_on(store):
    before = store.snapshot()
    _add_training_image(store)
    found = store.snapshot_at(before.snapshot_id)
    assert found is not None and found.snapshot_id == before.snapshot_id
    assert [len(i.objects) for i in found.images] == [len(i.objects) for i in before.images]
    assert store.snapshot_at(store.snapshot().snapshot_id).snapshot_id == store.snapshot().snapshot_id
    assert store.snapshot_at("0" * 32) is None


@pytest.mark.slow  # trains the parent (and a continuation) on the demo model
def test_a_continuation_starts_from_the_parent_and_names_it(store, parent, monkeypatch):
    from napari_sam_peft.core.training import loop

    decoders = []
    real_build = loop.build_decoder
    monkeypatch.setattr(
        loop, "build_decoder", lambda sam, state=None: decoders.append(state) or real_build(sam, state)
    )
    events = []
    # lr 0: the adapter's tensors cannot move, so the continued adapter holds exactly the parent's
    record = run_job(_job(store, steps=2, lr=0.0, with_decoder=True, from_adapter=parent), events.append)
    first, child = Adapter.load(parent), Adapter.load(record.adapter)
    assert child.parent_adapter == first.identity and first.parent_adapter == ""
    assert all(torch.equal(child.tensors[k], v) for k, v in first.tensors.items())
    assert decoders and all(torch.equal(decoders[-1][k], v) for k, v in first.decoder.items())
    started = next(e for e in events if e.event == "started")
    assert started.continued_from["hash"] == first.identity and started.continued_from["adapter"] == str(parent)
    assert "nothing was committed since the parent" in started.continued_from["replay"]
    assert record.parent["hash"] == first.identity
    assert list_runs(store.path)[0].parent["adapter"] == str(parent)  # the chain, in the run records


@pytest.mark.slow  # trains the parent (and a continuation) on the demo model
def test_images_committed_since_the_parent_are_drawn_more_often(store, parent):
    trained_on = Adapter.load(parent).training_snapshot
    _add_training_image(store)
    data = load_training_data(store.path, seed=0, parent_snapshot=trained_on)
    replay = data.replay
    assert replay is not None and replay.parent_found
    assert replay.new == [False, True] and replay.new_objects == int(make_sample("cells", seed=3).labels.max())
    weights = replay.weights()
    assert weights.sum() == pytest.approx(1.0) and weights[1] == pytest.approx(NEW_SHARE + (1 - NEW_SHARE) / 2)
    assert weights[0] > 0  # the parent's image stays in
    assert "1 of 2 training samples are new" in replay.describe()
    # an adapter trained on another store: every sample is drawn equally, and the run says so
    other = load_training_data(store.path, seed=0, parent_snapshot="f" * 32).replay
    assert other.weights() is None and "does not record" in other.describe()


@pytest.mark.slow  # trains the parent (and a continuation) on the demo model
def test_steps_draw_new_samples_by_their_weights(store, parent, monkeypatch):
    from napari_sam_peft.core.training import loop

    drawn = []
    real_step = loop._Stepper.step
    monkeypatch.setattr(
        loop._Stepper, "step", lambda self, m, index, *a: drawn.append(index) or real_step(self, m, index, *a)
    )
    _add_training_image(store)
    run_job(_job(store, steps=12, validate_every=12, from_adapter=parent, sub_iterations=0), lambda e: None)
    assert drawn.count(1) > drawn.count(0) > 0  # 3:1 odds for the new image; the old one is still drawn


@pytest.mark.slow  # trains the parent (and a continuation) on the demo model
def test_a_continuation_is_recommended_a_smaller_rate_and_steps_for_its_new_objects(store, parent):
    from napari_sam_peft.core.peft.recommend import recommended_lr
    from napari_sam_peft.core.sam.loading import load_model

    _add_training_image(store)
    events = []
    run_job(_job(store, steps=None, lr=None, from_adapter=parent), events.append, should_stop=lambda: True)
    started = next(e for e in events if e.event == "started")
    assert started.lr_chosen == started.steps_chosen == "recommended for a continuation"
    model = load_model("demo")
    assert started.lr == pytest.approx(recommended_lr("lora", model.architecture) / 2)
    new_objects = started.continued_from["new_objects"]
    # on a CPU the run takes the CPU recipe's passes over the objects
    assert started.steps == continuation_steps(new_objects, started.train_objects, 4, CPU.passes_over_objects)
    assert continuation_steps(0, 60, 8) == 50 and continuation_steps(10, 200, 8) == 100
    assert continuation_steps(100, 60, 8) == 200  # never more than a run from the base model


def _refused(store, job, match: str, error: type = SamPeftError) -> None:
    before = sorted(runs_dir(store.path).glob("*"))
    with pytest.raises(error, match=match):
        run_job(job, lambda event: None)
    assert sorted(runs_dir(store.path).glob("*")) == before  # no run folder, no record


@pytest.mark.slow  # trains the parent (and a continuation) on the demo model
def test_a_parent_of_another_base_model_method_or_blocks_is_refused_and_nothing_written(store, parent, tmp_path):
    first = Adapter.load(parent)
    foreign = dataclasses.replace(
        first, base_model=dataclasses.replace(first.base_model, name="vit_b", content_hash="ab" * 32)
    )
    foreign.save(tmp_path / "foreign.safetensors")
    _refused(store, _job(store, from_adapter=tmp_path / "foreign.safetensors"), "trained on base model 'vit_b'",
             AdapterMismatchError)  # fmt: skip
    _refused(store, _job(store, from_adapter=parent, blocks="last 2"), "Choose the parent's preset")
    _refused(store, _job(store, from_adapter=parent, rank=2), "rank 2")
    _refused(store, _job(store, from_adapter=parent, preset="freeze_encoder", blocks=None), "trained as late_lora")


@pytest.mark.slow  # trains the parent (and a continuation) on the demo model
def test_a_corrupt_or_missing_parent_is_refused_and_nothing_written(store, parent, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    data = bytearray(open(parent, "rb").read())
    data[-8:] = b"\x00" * 8
    corrupt.write_bytes(bytes(data))
    _refused(
        store, _job(store, from_adapter=corrupt), "Cannot continue from corrupt.safetensors", InvalidAdapterError
    )
    missing = tmp_path / "gone.safetensors"
    _refused(
        store, _job(store, from_adapter=missing), "Cannot continue from gone.safetensors", InvalidAdapterError
    )


def test_replay_weights_are_equal_when_nothing_or_everything_is_new():
    assert Replay([False, False], True, 0).weights() is None
    assert Replay([True, True], True, 5).weights() is None
    weights = Replay([True, False, False, False], True, 2).weights()
    assert np.allclose(weights, [0.5 + 0.125, 0.125, 0.125, 0.125])
