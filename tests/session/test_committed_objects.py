"""The session's commits, undo and store recording, without Qt, napari or a model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.session import AnnotatorSession, StoreUpdate

SAMPLE = make_sample("nuclei", seed=0, shape=(128, 128))
IMAGE = SAMPLE.image
NAME = "nuclei"


def _objects(*ids: int) -> np.ndarray:
    """The sample's objects ``ids``, numbered 1..n as a segmentation hands them over."""
    objects = np.zeros(IMAGE.shape, dtype=np.uint32)
    for index, obj in enumerate(ids, start=1):
        objects[SAMPLE.labels == obj] = index
    return objects


@pytest.fixture
def session(tmp_path) -> AnnotatorSession:
    session = AnnotatorSession()
    session.default_store_path = tmp_path / "default.sampeft.zarr"
    return session


@pytest.fixture
def updates(session) -> list[StoreUpdate]:
    seen: list[StoreUpdate] = []
    session.store_updated.connect(seen.append)
    return seen


def test_a_commit_numbers_objects_after_the_last_id_and_records_them_with_their_prompts(session, updates):
    labels = session.open_image(NAME, IMAGE).labels
    prompts = [ObjectPrompts(points=[[10, 12]], labels=[1]), ObjectPrompts(box=[1, 2, 30, 40])]
    assert session.commit(NAME, IMAGE, labels, _objects(1, 2), prompts) == [1, 2]
    assert session.commit(NAME, IMAGE, labels, _objects(3)) == [3]

    for new, obj in ((1, 1), (2, 2), (3, 3)):
        np.testing.assert_array_equal(labels == new, SAMPLE.labels == obj)
    store = AnnotationStore(session.default_store_path)  # created by the first commit
    (stored,) = store.snapshot().images
    assert stored.name == NAME and [o.source for o in stored.objects] == ["prompts"] * 3
    assert stored.objects[0].prompts == {"points": [[10.0, 12.0]], "labels": [1], "box": None}
    assert stored.objects[1].prompts["box"] == [1.0, 2.0, 30.0, 40.0]
    assert stored.objects[2].prompts == {}  # more objects than prompts: the extra one has none
    assert [u.cause for u in updates] == ["recorded", "recorded"] and updates[0].store is session.store


def test_undo_takes_back_the_last_commit_from_labels_and_store(session):
    labels = session.open_image(NAME, IMAGE).labels
    session.commit(NAME, IMAGE, labels, _objects(1))
    before = labels.copy()
    session.commit(NAME, IMAGE, labels, _objects(2, 3))

    undone = session.undo(NAME, IMAGE, labels)
    assert undone is not None and undone.object_ids == [2, 3]
    np.testing.assert_array_equal(labels, before)
    assert session.store.info()["objects"] == 1
    session.undo(NAME, IMAGE, labels)
    assert not labels.any() and session.store.info()["objects"] == 0
    assert session.undo(NAME, IMAGE, labels) is None  # nothing left
    assert session.undo("never opened", IMAGE, labels) is None


def test_a_commit_over_an_object_is_undone_to_what_was_there(session):
    labels = session.open_image(NAME, IMAGE).labels
    session.commit(NAME, IMAGE, labels, _objects(1))
    before = labels.copy()
    covering = np.zeros_like(labels)
    covering[SAMPLE.labels == 1] = 1
    covering[:4, :4] = 1
    session.commit(NAME, IMAGE, labels, covering)
    assert set(np.unique(labels)) == {0, 2}
    session.undo(NAME, IMAGE, labels)
    np.testing.assert_array_equal(labels, before)


def test_automatic_sources_tell_kept_from_edited_proposals(session):
    from napari_sam_peft.core.annotation.commits import automatic_sources

    proposal = _objects(1, 2)
    edited = proposal.copy()
    edited[np.argwhere(edited == 2)[0][0], np.argwhere(edited == 2)[0][1]] = 0
    sources = automatic_sources(edited, proposal)
    assert sources == ["automatic", "automatic-edited"]
    assert automatic_sources(edited, None) == ["automatic-edited"] * 2

    labels = session.open_image(NAME, IMAGE).labels
    session.commit(NAME, IMAGE, labels, edited, sources=sources)
    assert sorted(o.source for o in session.store.snapshot().images[0].objects) == sources


def test_painted_corrections_are_recorded_as_corrected_or_painted(session):
    labels = session.open_image(NAME, IMAGE).labels
    session.commit(NAME, IMAGE, labels, _objects(1, 2), [ObjectPrompts(points=[[5, 5]], labels=[1])])
    labels[:3, :3] = 1  # the brush grows object 1
    labels[labels == 2] = 0  # the eraser removes object 2
    labels[-4:, -4:] = 9  # a new object painted by hand

    result = session.record(IMAGE, labels, name=NAME)
    assert (result.added, result.changed, result.removed) == ([9], [1], [2])
    objects = session.store.snapshot().images[0].objects
    by_source = {o.source: o for o in objects}
    assert set(by_source) == {"corrected", "painted"}
    assert by_source["corrected"].prompts["labels"] == [1]  # the commit's prompts stay with the object
    np.testing.assert_array_equal(session.store.object_mask(by_source["painted"], labels.shape), labels == 9)
    assert not session.record(IMAGE, labels, name=NAME).wrote  # nothing changed since


def test_a_restarted_session_opens_an_image_with_its_stored_objects(session, tmp_path):
    labels = session.open_image(NAME, IMAGE).labels
    session.commit(NAME, IMAGE, labels, _objects(1, 2))

    restarted = AnnotatorSession()
    restarted.default_store_path = session.default_store_path
    opened = restarted.open_image(NAME, IMAGE)
    assert opened.restored == 2 and opened.store_error is None
    np.testing.assert_array_equal(opened.labels > 0, labels > 0)
    assert restarted.commit(NAME, IMAGE, opened.labels, _objects(3)) == [3]
    assert restarted.store.info()["objects"] == 3  # no duplicates of the restored objects
    assert restarted.open_image(NAME, IMAGE).labels is opened.labels  # kept for the rest of the session


def test_an_image_opens_empty_with_the_reason_when_the_store_is_unreadable(session):
    session.default_store_path.mkdir(parents=True)  # a folder named like a store, holding nothing
    opened = session.open_image(NAME, IMAGE)
    assert opened.restored is None and isinstance(opened.store_error, SamPeftError | OSError)
    assert opened.labels.shape == IMAGE.shape and not opened.labels.any()


def test_a_commit_that_cannot_be_recorded_raises_and_keeps_the_commit():
    session = AnnotatorSession()  # no store open and no default path
    labels = session.open_image(NAME, IMAGE).labels
    with pytest.raises(SamPeftError, match="No annotation store is open"):
        session.commit(NAME, IMAGE, labels, _objects(1))
    assert labels.max() == 1
    with pytest.raises(SamPeftError):
        session.undo(NAME, IMAGE, labels)
    assert not labels.any()  # undone all the same


def test_keep_labels_follows_a_view_that_replaced_its_array(session):
    session.open_image(NAME, IMAGE)
    replaced = np.zeros(IMAGE.shape, dtype=np.uint32)
    session.keep_labels(NAME, replaced)
    assert session.open_image(NAME, IMAGE).labels is replaced


def test_store_edits_change_the_store_and_say_why(session, tmp_path, updates):
    changed = []
    session.store_changed.connect(changed.append)
    store = session.open_store(tmp_path / "project")  # a folder gets the default store name inside
    assert changed == [store] and store.path.name == "annotations.sampeft.zarr"

    objects = session.import_labels(IMAGE, SAMPLE.labels, name="imported")
    assert len(objects) == SAMPLE.labels.max()
    (image,) = store.snapshot().images
    session.set_split(image.image_id, "val")
    assert store.info()["val_images"] == 1
    session.remove_image(image.image_id)
    assert store.info()["images"] == 0
    session.store_edited()
    assert [u.cause for u in updates] == ["imported", "split", "removed", "edited"]
    with pytest.raises(SamPeftError, match="must match"):
        session.import_labels(IMAGE, SAMPLE.labels[:10], name="bad")


def test_store_description_says_where_commits_go(session, tmp_path):
    text, path = session.store_description()
    assert str(session.default_store_path) in text and path == str(session.default_store_path)
    labels = session.open_image(NAME, IMAGE).labels
    session.commit(NAME, IMAGE, labels, _objects(1))
    text, _ = session.store_description()
    assert text.startswith("Training data: 1 objects on 1 images")


def test_request_flush_asks_the_annotator_to_record(session):
    asked = []
    session.flush_requested.connect(lambda: asked.append(True))
    session.request_flush()
    assert asked == [True]
