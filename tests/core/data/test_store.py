"""The annotation store: round trip, bad inputs, SIGKILL durability, concurrency, properties."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_sam_peft.core.data.store import AnnotationStore, StoreError
from tests.core.data.conftest import SAMPLE, _files


def test_round_trip_gives_identical_arrays_and_prompts(store, tmp_path):
    image_id = store.add_image(SAMPLE.image, name="cells 0")
    prompts = {"points": [[10.5, 20.0], [30.0, 31.0]], "labels": [1, 0], "box": [1, 2, 30, 40]}
    mask = SAMPLE.labels == 1
    object_id = store.add_object(image_id, mask, prompts=prompts, source="prompts")

    reopened = AnnotationStore(store.path)
    snapshot = reopened.snapshot()
    (image,) = snapshot.images
    np.testing.assert_array_equal(reopened.image(image_id), SAMPLE.image)
    assert reopened.image(image_id).dtype == SAMPLE.image.dtype
    (obj,) = image.objects
    assert obj.object_id == object_id and obj.prompts == prompts and obj.source == "prompts"
    np.testing.assert_array_equal(reopened.object_mask(obj, mask.shape), mask)
    assert image.name == "cells 0"


def test_imported_labels_come_back_identical(store):
    store.add_labels(SAMPLE.image, SAMPLE.labels)
    (image,) = store.snapshot().images
    np.testing.assert_array_equal(store.labels(image), SAMPLE.labels)


@pytest.mark.parametrize(
    ("image", "labels", "message"),
    [
        (SAMPLE.image, SAMPLE.labels[:32], "must match"),
        (SAMPLE.image, SAMPLE.labels.astype(np.float32), "integers"),
        (SAMPLE.image, np.zeros_like(SAMPLE.labels), "empty"),
    ],
    ids=["shape-mismatch", "float-labels", "empty-labels"],
)
def test_bad_labels_are_refused_and_the_store_is_unchanged(store, image, labels, message):
    before = _files(store.path)
    with pytest.raises(StoreError, match=message):
        store.add_labels(image, labels)
    assert _files(store.path) == before


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_commit(tmp_path):
    """Kill a writing process 50 times at random moments; every acknowledged commit survives."""
    path = tmp_path / "kill.sampeft.zarr"
    store = AnnotationStore.create(path)
    store.add_image(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.core.data.store_writer"])
    from tests.core.data.store_writer import write_forever

    acknowledged = {}
    rng = np.random.default_rng(0)
    for round_ in range(50):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=write_forever, args=(str(path), sender, round_))
        process.start()
        sender.close()
        receiver.poll(None)  # the writer's first commit of this round is acknowledged, then a random moment
        _receive(receiver, acknowledged)
        deadline = time.monotonic() + rng.uniform(0.05, 0.4)
        while time.monotonic() < deadline:
            if receiver.poll(0.01):
                _receive(receiver, acknowledged)
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        while receiver.poll() and _receive(receiver, acknowledged):
            pass
        receiver.close()

        reopened = AnnotationStore(path)  # opens without any repair by hand
        (image,) = reopened.snapshot().images
        present = {obj.object_id: obj for obj in image.objects}
        missing = set(acknowledged) - set(present)
        assert not missing, f"round {round_}: lost {len(missing)} acknowledged commit(s)"
        for object_id, (r, c, area) in acknowledged.items():
            mask = reopened.object_mask(present[object_id], (64, 64))
            assert mask[r, c] and mask.sum() == area
    assert len(acknowledged) >= 50


def _receive(receiver, acknowledged) -> bool:
    """Record one acknowledgement; a message cut off by the kill acknowledges nothing."""
    try:
        object_id, r, c, area = receiver.recv()
    except (EOFError, OSError, ValueError):
        return False
    acknowledged[object_id] = (r, c, area)
    return True


def test_a_reader_takes_snapshots_while_the_annotator_commits(store):
    image_id = store.add_image(SAMPLE.image)
    errors, counts = [], []
    stop = threading.Event()

    def read():
        reader = AnnotationStore(store.path)
        while not stop.is_set():
            try:
                snapshot = reader.snapshot()
                for image in snapshot.images:
                    for obj in image.objects:
                        assert reader.object_mask(obj, image.shape[:2]).any()
                counts.append(snapshot.info()["objects"])
            except Exception as err:  # noqa: BLE001
                errors.append(err)

    thread = threading.Thread(target=read)
    thread.start()
    for obj in range(1, SAMPLE.labels.max() + 1):
        store.add_object(image_id, SAMPLE.labels == obj)
    stop.set()
    thread.join()
    assert not errors
    assert counts == sorted(counts)  # snapshots only ever grow while only adding


operation = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 3), st.integers(0, 40), st.integers(0, 40), st.integers(2, 20)),
    st.tuples(st.just("remove"), st.integers(0, 50)),
    st.tuples(st.just("split"), st.integers(0, 3), st.sampled_from(["train", "val"])),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operation, max_size=25))
def test_any_sequence_of_commits_and_deletions_reads_back_as_a_model_says(tmp_path_factory, operations):
    path = tmp_path_factory.mktemp("prop") / "p.sampeft.zarr"
    store = AnnotationStore.create(path)
    images = [store.add_image(np.full((48, 48), i, np.uint8) + np.eye(48, dtype=np.uint8)) for i in range(4)]
    model_objects: dict[str, tuple[str, np.ndarray]] = {}
    splits = {i: s.split for i, s in zip(images, store.snapshot().images, strict=True)}
    order: list[str] = []
    for op in operations:
        if op[0] == "add":
            _, image, r, c, size = op
            mask = np.zeros((48, 48), bool)
            mask[r : r + size, c : c + size] = True
            object_id = store.add_object(images[image], mask)
            model_objects[object_id] = (images[image], mask)
            order.append(object_id)
        elif op[0] == "remove" and order:
            object_id = order[op[1] % len(order)]
            store.remove_object(object_id)
            model_objects.pop(object_id, None)
        elif op[0] == "split":
            store.set_split(images[op[1]], op[2])
            splits[images[op[1]]] = op[2]

    snapshot = AnnotationStore(path).snapshot()
    assert {i.image_id: i.split for i in snapshot.images} == splits
    stored = {
        o.object_id: (i.image_id, store.object_mask(o, (48, 48))) for i in snapshot.images for o in i.objects
    }
    assert set(stored) == set(model_objects)
    for object_id, (image_id, mask) in model_objects.items():
        assert stored[object_id][0] == image_id
        np.testing.assert_array_equal(stored[object_id][1], mask)


def test_the_snapshot_is_replayed_once_per_change_whoever_asks_and_whoever_wrote(tmp_path, monkeypatch):
    """Every dock reads the store's counts after each commit: the journal is read and replayed once per
    change, and a record another process wrote is seen at the next look."""
    import napari_sam_peft.core.data.store as store_module
    from napari_sam_peft.core.data.sample_data import make_sample

    replays = []
    original = store_module.replay
    monkeypatch.setattr(store_module, "replay", lambda *a, **k: replays.append(1) or original(*a, **k))
    store = AnnotationStore.create(tmp_path / "s.sampeft.zarr")
    sample = make_sample("cells", seed=1)
    store.add_labels(sample.image, sample.labels, split="train")
    replays.clear()
    first = [store.info()["objects"] for _ in range(7)]  # seven observers after one change
    assert len(replays) <= 1 and len(set(first)) == 1 and first[0] > 0
    other_process = AnnotationStore(store.path)  # another writer of the same folder
    other_process.set_split(store.snapshot().images[0].image_id, "val")
    replays.clear()
    assert [store.info()["val_objects"] for _ in range(7)] == [first[0]] * 7 and len(replays) == 1
