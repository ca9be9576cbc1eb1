"""A store's content at one moment: replaying the journal, the split, the counts and the snapshot id."""

from __future__ import annotations

import pytest

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.snapshot import default_split, replay
from napari_sam_peft.core.data.store import AnnotationStore
from tests.core.data.conftest import SAMPLE


def test_split_is_deterministic_and_overridable(tmp_path):
    store = AnnotationStore.create(tmp_path / "a.sampeft.zarr", validation_fraction=0.5)
    ids = [store.add_image(make_sample("nuclei", seed=s, shape=(32, 32)).image) for s in range(12)]
    first = {i.image_id: i.split for i in store.snapshot().images}
    again = AnnotationStore(store.path, validation_fraction=0.5).snapshot()
    assert first == {i.image_id: i.split for i in again.images}
    assert set(first.values()) == {"train", "val"}
    store.set_split(ids[0], "val" if first[ids[0]] == "train" else "train")
    assert {i.image_id: i.split for i in store.snapshot().images}[ids[0]] != first[ids[0]]


def test_snapshot_id_changes_with_content_and_info_counts(store):
    empty = store.snapshot().snapshot_id
    image_id, object_ids = store.add_labels(SAMPLE.image, SAMPLE.labels, split="val")
    info = store.info()
    assert info["images"] == 1 and info["val_images"] == 1 and info["val_objects"] == len(object_ids)
    assert info["snapshot"] != empty
    store.remove_object(object_ids[0])
    assert store.info()["objects"] == len(object_ids) - 1
    store.remove_image(image_id)
    assert store.info()["images"] == 0


def _image(image_id, split=None):
    return {"op": "add_image", "image_id": image_id, "shape": [8, 8], "split": split, "time": "t"}


def _object(object_id, image_id):
    return {"op": "add_object", "object_id": object_id, "image_id": image_id, "bbox": [0, 0, 1, 1], "time": "t"}


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([_image("a", "train"), _object("o1", "a"), _object("o2", "a")], {"a": ["o1", "o2"]}),
        ([_image("a", "train"), _object("o1", "a"), {"op": "remove_object", "object_id": "o1"}], {"a": []}),
        ([_image("a", "val"), _object("o1", "a"), {"op": "remove_image", "image_id": "a"}], {}),
        ([_object("o1", "a"), _image("a", "val")], {"a": []}),  # an object before its image is not kept
    ],
    ids=["add", "remove-object", "remove-image", "object-first"],
)
def test_replay_gives_what_the_journal_leaves(records, expected):
    snapshot = replay(records)
    assert {i.image_id: [o.object_id for o in i.objects] for i in snapshot.images} == expected
    assert snapshot.snapshot_id == replay(list(records)).snapshot_id


def test_the_default_split_is_a_stable_function_of_the_id():
    splits = [default_split(f"image-{n}", 0.5) for n in range(40)]
    assert splits == [default_split(f"image-{n}", 0.5) for n in range(40)] and set(splits) == {"train", "val"}
    assert {default_split(f"image-{n}", 0.0) for n in range(40)} == {"train"}
