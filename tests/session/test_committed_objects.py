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
    return AnnotatorSession(default_store=lambda: tmp_path / "default.sampeft.zarr")


@pytest.fixture
def updates(session) -> list[StoreUpdate]:
    seen: list[StoreUpdate] = []
    session.annotations.store_updated.connect(seen.append)
    return seen


def test_a_commit_numbers_objects_after_the_last_id_and_records_them_with_their_prompts(session, updates):
    labels = session.annotations.open_image(NAME, IMAGE).labels
    prompts = [ObjectPrompts(points=[[10, 12]], labels=[1]), ObjectPrompts(box=[1, 2, 30, 40])]
    assert session.annotations.commit(NAME, IMAGE, labels, _objects(1, 2), prompts) == [1, 2]
    assert session.annotations.commit(NAME, IMAGE, labels, _objects(3)) == [3]

    for new, obj in ((1, 1), (2, 2), (3, 3)):
        np.testing.assert_array_equal(labels == new, SAMPLE.labels == obj)
    store = AnnotationStore(session.annotations.default_store_path)  # created by the first commit
    (stored,) = store.snapshot().images
    assert stored.name == NAME and [o.source for o in stored.objects] == ["prompts"] * 3
    assert stored.objects[0].prompts == {"points": [[10.0, 12.0]], "labels": [1], "box": None}
    assert stored.objects[1].prompts["box"] == [1.0, 2.0, 30.0, 40.0]
    assert stored.objects[2].prompts == {}  # more objects than prompts: the extra one has none
    assert [u.cause for u in updates] == ["recorded", "recorded"] and updates[0].store is session.annotations.store


def test_undo_takes_back_the_last_commit_from_labels_and_store(session):
    labels = session.annotations.open_image(NAME, IMAGE).labels
    session.annotations.commit(NAME, IMAGE, labels, _objects(1))
    before = labels.copy()
    session.annotations.commit(NAME, IMAGE, labels, _objects(2, 3))

    undone = session.annotations.undo(NAME, IMAGE, labels)
    assert undone is not None and undone.object_ids == [2, 3]
    np.testing.assert_array_equal(labels, before)
    assert session.annotations.store.info()["objects"] == 1
    session.annotations.undo(NAME, IMAGE, labels)
    assert not labels.any() and session.annotations.store.info()["objects"] == 0
    assert session.annotations.undo(NAME, IMAGE, labels) is None  # nothing left
    assert session.annotations.undo("never opened", IMAGE, labels) is None


def test_a_commit_over_an_object_is_undone_to_what_was_there(session):
    labels = session.annotations.open_image(NAME, IMAGE).labels
    session.annotations.commit(NAME, IMAGE, labels, _objects(1))
    before = labels.copy()
    covering = np.zeros_like(labels)
    covering[SAMPLE.labels == 1] = 1
    covering[:4, :4] = 1
    session.annotations.commit(NAME, IMAGE, labels, covering)
    assert set(np.unique(labels)) == {0, 2}
    session.annotations.undo(NAME, IMAGE, labels)
    np.testing.assert_array_equal(labels, before)


def test_automatic_sources_tell_kept_from_edited_proposals(session):
    from napari_sam_peft.core.annotation.commits import automatic_sources

    proposal = _objects(1, 2)
    edited = proposal.copy()
    edited[np.argwhere(edited == 2)[0][0], np.argwhere(edited == 2)[0][1]] = 0
    sources = automatic_sources(edited, proposal)
    assert sources == ["automatic", "automatic-edited"]
    assert automatic_sources(edited, None) == ["automatic-edited"] * 2

    labels = session.annotations.open_image(NAME, IMAGE).labels
    session.annotations.commit(NAME, IMAGE, labels, edited, sources=sources)
    assert sorted(o.source for o in session.annotations.store.snapshot().images[0].objects) == sources


def test_painted_corrections_are_recorded_as_corrected_or_painted(session):
    labels = session.annotations.open_image(NAME, IMAGE).labels
    session.annotations.commit(NAME, IMAGE, labels, _objects(1, 2), [ObjectPrompts(points=[[5, 5]], labels=[1])])
    labels[:3, :3] = 1  # the brush grows object 1
    labels[labels == 2] = 0  # the eraser removes object 2
    labels[-4:, -4:] = 9  # a new object painted by hand

    result = session.annotations.record(IMAGE, labels, name=NAME)
    assert (result.added, result.changed, result.removed) == ([9], [1], [2])
    objects = session.annotations.store.snapshot().images[0].objects
    by_source = {o.source: o for o in objects}
    assert set(by_source) == {"corrected", "painted"}
    assert by_source["corrected"].prompts["labels"] == [1]  # the commit's prompts stay with the object
    np.testing.assert_array_equal(
        session.annotations.store.object_mask(by_source["painted"], labels.shape), labels == 9
    )
    assert not session.annotations.record(IMAGE, labels, name=NAME).wrote  # nothing changed since


def test_a_restarted_session_opens_an_image_with_its_stored_objects(session, tmp_path):
    labels = session.annotations.open_image(NAME, IMAGE).labels
    session.annotations.commit(NAME, IMAGE, labels, _objects(1, 2))

    restarted = AnnotatorSession(default_store=lambda: session.annotations.default_store_path)
    opened = restarted.annotations.open_image(NAME, IMAGE)
    assert opened.restored == 2 and opened.store_error is None
    np.testing.assert_array_equal(opened.labels > 0, labels > 0)
    assert restarted.annotations.commit(NAME, IMAGE, opened.labels, _objects(3)) == [3]
    assert restarted.annotations.store.info()["objects"] == 3  # no duplicates of the restored objects
    assert restarted.annotations.open_image(NAME, IMAGE).labels is opened.labels  # kept for the session


def test_an_image_opens_empty_with_the_reason_when_the_store_is_unreadable(session):
    session.annotations.default_store_path.mkdir(parents=True)  # a folder named like a store, holding nothing
    opened = session.annotations.open_image(NAME, IMAGE)
    assert opened.restored is None and isinstance(opened.store_error, SamPeftError | OSError)
    assert opened.labels.shape == IMAGE.shape and not opened.labels.any()


def test_a_commit_that_cannot_be_recorded_raises_and_keeps_the_commit():
    session = AnnotatorSession()  # no store open and no default path
    labels = session.annotations.open_image(NAME, IMAGE).labels
    with pytest.raises(SamPeftError, match="No annotation store is open"):
        session.annotations.commit(NAME, IMAGE, labels, _objects(1))
    assert labels.max() == 1
    with pytest.raises(SamPeftError):
        session.annotations.undo(NAME, IMAGE, labels)
    assert not labels.any()  # undone all the same


def test_keep_labels_follows_a_view_that_replaced_its_array(session):
    session.annotations.open_image(NAME, IMAGE)
    replaced = np.zeros(IMAGE.shape, dtype=np.uint32)
    session.annotations.keep_labels(NAME, replaced)
    assert session.annotations.open_image(NAME, IMAGE).labels is replaced


def test_store_edits_change_the_store_and_say_why(session, tmp_path, updates):
    changed = []
    session.annotations.store_changed.connect(changed.append)
    store = session.annotations.open_store(tmp_path / "project")  # a folder gets the default store name inside
    assert changed == [store] and store.path.name == "annotations.sampeft.zarr"

    objects = session.annotations.import_labels(IMAGE, SAMPLE.labels, name="imported")
    assert len(objects) == SAMPLE.labels.max()
    (image,) = store.snapshot().images
    session.annotations.set_split(image.image_id, "val")
    assert store.info()["val_images"] == 1
    session.annotations.remove_image(image.image_id)
    assert store.info()["images"] == 0
    session.annotations.store_edited()
    assert [u.cause for u in updates] == ["imported", "split", "removed", "edited"]
    with pytest.raises(SamPeftError, match="must match"):
        session.annotations.import_labels(IMAGE, SAMPLE.labels[:10], name="bad")


def test_store_description_says_where_commits_go(session, tmp_path):
    text, path = session.annotations.store_description()
    assert str(session.annotations.default_store_path) in text and path == str(
        session.annotations.default_store_path
    )
    labels = session.annotations.open_image(NAME, IMAGE).labels
    session.annotations.commit(NAME, IMAGE, labels, _objects(1))
    text, _ = session.annotations.store_description()
    assert text.startswith("Training data: 1 object on 1 image in")


def test_images_painted_by_hand_are_recorded_by_the_session_without_a_view(session):
    labels = session.annotations.open_image(NAME, IMAGE).labels
    labels[5:15, 5:15] = 7  # a brush stroke, in place, as napari paints
    session.annotations.mark_edited(NAME, labels)
    assert session.annotations.edited == {NAME}
    session.annotations.record_edited()
    assert session.annotations.store.info()["objects"] == 1
    assert session.annotations.edited == set()


def test_removing_an_object_takes_it_out_of_the_labels_and_the_store(session):
    changed = []
    session.annotations.labels_changed.connect(changed.append)
    labels = session.annotations.open_image(NAME, IMAGE).labels
    session.annotations.commit(NAME, IMAGE, labels, _objects(1, 2))
    session.annotations.remove_object(NAME, 1)
    assert 1 not in labels and 2 in labels
    assert session.annotations.store.info()["objects"] == 1
    assert changed == [NAME, NAME]  # the commit, then the removal: the view redraws both
    with pytest.raises(SamPeftError, match="open it first"):
        session.annotations.remove_object("never opened", 1)
