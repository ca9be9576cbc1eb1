"""The Dataset widget and the store reader/writer in a real napari viewer."""

from __future__ import annotations

import numpy as np

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from tests._qt.conftest import click, error_messages, place_points

NUCLEI = make_sample("nuclei", seed=0)


def _centre(obj):
    rows, cols = np.nonzero(NUCLEI.labels == obj)
    return [rows.mean(), cols.mean()]


def _dataset(viewer, tmp_path):
    from napari_sam_peft._qt.dataset_widget import DatasetWidget

    widget = DatasetWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Dataset")
    widget.open_store(tmp_path / "project.sampeft.zarr")
    return widget


def test_commits_are_recorded_with_prompts_and_undo_removes_them(segment_widget, tmp_path):
    viewer, segment = segment_widget
    dataset = _dataset(viewer, tmp_path)
    place_points(segment, [_centre(1), [5.0, 5.0]], ["positive", "negative"])
    click(segment.segment_button)
    click(segment.commit_button)
    place_points(segment, [_centre(2)], ["positive"])
    click(segment.segment_button)
    click(segment.commit_button)

    store = AnnotationStore(tmp_path / "project.sampeft.zarr")
    (image,) = store.snapshot().images
    assert image.name == "nuclei (domain A)" and len(image.objects) == 2
    first = image.objects[0]
    assert first.prompts["labels"] == [1, 0] and first.source == "prompts"
    np.testing.assert_array_equal(
        store.object_mask(first, NUCLEI.image.shape), viewer.layers["committed_objects"].data == 1
    )
    np.testing.assert_array_equal(store.image(image.image_id), NUCLEI.image)
    assert "2 objects" in dataset.summary.value
    assert dataset.table.data.to_list() == [["nuclei (domain A)", image.split, 2]]

    click(segment.undo_button)
    assert len(store.snapshot().images[0].objects) == 1


def test_remove_selected_object_and_set_split(segment_widget, tmp_path):
    viewer, segment = segment_widget
    dataset = _dataset(viewer, tmp_path)
    place_points(segment, [_centre(1)], ["positive"])
    click(segment.segment_button)
    click(segment.commit_button)
    viewer.layers["committed_objects"].selected_label = 1
    click(dataset.remove_object_button)
    assert dataset.store.info()["objects"] == 0
    assert not viewer.layers["committed_objects"].data.any()  # the store holds what the user sees

    dataset.store_image.value = dataset.store.snapshot().images[0].image_id
    dataset.split.value = "val"
    click(dataset.split_button)
    assert dataset.store.info()["val_images"] == 1


def test_commits_are_training_data_with_no_dataset_dock_open(segment_widget, tmp_path):
    """Recording belongs to the session: the default store is created on the first commit."""
    viewer, segment = segment_widget
    place_points(segment, [_centre(1)], ["positive"])
    click(segment.segment_button)
    click(segment.commit_button)

    default = tmp_path / "home" / "napari-sam-peft" / "annotations.sampeft.zarr"
    assert AnnotationStore(default).info()["objects"] == 1
    assert str(default) in segment.store_status.native.toolTip()  # the user sees where it went
    assert "1 object on 1 image" in segment.store_status.value


def test_painted_corrections_are_recorded(segment_widget, qtbot, tmp_path):
    """Brush, eraser and fill on committed_objects change the store, as the user sees it."""
    viewer, segment = segment_widget
    dataset = _dataset(viewer, tmp_path)
    place_points(segment, [_centre(1), _centre(2)], ["positive", "positive"])
    segment.batch_mode.value = True
    click(segment.segment_button)
    click(segment.commit_button)
    committed = viewer.layers["committed_objects"]
    store = dataset.store

    committed.paint((5, 5), 1, refresh=True)  # brush: object 1 grows by a disc far from it
    committed.fill(tuple(int(v) for v in np.argwhere(committed.data == 2)[0]), 0)  # fill with 0: erase object 2
    committed.paint((200, 200), 7)  # a new object painted by hand
    qtbot.waitUntil(
        lambda: store.info()["objects"] == 2 and not segment.commits_panel.corrections_pending, timeout=5000
    )

    (image,) = store.snapshot().images
    by_source = {o.source: o for o in image.objects}
    assert set(by_source) == {"corrected", "painted"}
    np.testing.assert_array_equal(
        store.object_mask(by_source["corrected"], committed.data.shape), committed.data == 1
    )
    np.testing.assert_array_equal(
        store.object_mask(by_source["painted"], committed.data.shape), committed.data == 7
    )
    assert by_source["corrected"].prompts["labels"] == [1]  # the commit's prompts stay with the object


def test_after_a_restart_the_image_shows_its_objects_and_recommitting_adds_no_duplicates(
    make_napari_viewer, qtbot, demo_model, tmp_path
):
    from napari_sam_peft._qt.segment_widget import SegmentWidget
    from tests._qt.conftest import wait_for_worker

    def annotator():
        viewer = make_napari_viewer()
        viewer.open_sample("napari-sam-peft", "nuclei")
        widget = SegmentWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Segment")
        widget.session.model.set_base(demo_model)
        wait_for_worker(qtbot, widget)
        return viewer, widget

    viewer, segment = annotator()
    place_points(segment, [_centre(1), _centre(2)], ["positive", "positive"])
    segment.batch_mode.value = True
    click(segment.segment_button)
    click(segment.commit_button)
    before = viewer.layers["committed_objects"].data.copy()
    viewer.close()

    viewer, segment = annotator()  # napari restarted: same image, same default store
    np.testing.assert_array_equal(viewer.layers["committed_objects"].data > 0, before > 0)
    store = segment.session.annotations.store
    assert store.info()["objects"] == 2
    place_points(segment, [_centre(3)], ["positive"])
    click(segment.segment_button)
    click(segment.commit_button)
    assert store.info()["objects"] == 3 and len(store.snapshot().images) == 1


def test_automatic_objects_are_marked_edited_or_not(segment_widget, tmp_path, qtbot, monkeypatch):
    from tests._qt.conftest import wait_for_worker

    viewer, segment = segment_widget
    dataset = _dataset(viewer, tmp_path)
    proposal = (NUCLEI.labels * (NUCLEI.labels <= 2)).astype(np.uint32)
    monkeypatch.setattr(segment.session.model, "automatic", lambda image, embeddings, progress=None, **_: proposal)
    click(segment.auto_button)
    wait_for_worker(qtbot, segment)
    auto = viewer.layers["auto_segmentation"]
    edited = auto.data.copy()
    rows, cols = np.nonzero(edited == 2)
    edited[rows[0], cols[0]] = 0  # the user touches object 2
    auto.data = edited
    click(segment.commit_auto_button)
    sources = sorted(o.source for o in dataset.store.snapshot().images[0].objects)
    assert sources == ["automatic", "automatic-edited"]


def test_import_from_layers_and_bad_labels_notify(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-peft", "cells")
    dataset = _dataset(viewer, tmp_path)
    dataset.import_image.value = "cells (domain B)"
    dataset.import_labels.value = "cells (domain B) ground truth"
    click(dataset.import_button)
    cells = make_sample("cells", seed=0)
    assert dataset.store.info()["objects"] == cells.labels.max()

    viewer.add_labels(np.zeros((10, 10), dtype=np.uint8), name="wrong")
    dataset.import_labels.value = "wrong"
    click(dataset.import_button)
    assert any("must match" in m for m in error_messages())
    assert dataset.store.info()["objects"] == cells.labels.max()


def test_opening_a_store_in_napari_and_saving_one(make_napari_viewer, tmp_path):
    from napari_sam_peft._reader_writer import get_reader, write_image_and_labels

    cells = make_sample("cells", seed=0, shape=(64, 64))
    target = tmp_path / "saved.sampeft.zarr"
    written = write_image_and_labels(
        str(target), [(cells.image, {"name": "cells"}, "image"), (cells.labels, {"name": "gt"}, "labels")]
    )
    assert written == [str(target)]
    assert get_reader(str(tmp_path)) is None  # not a store: napari tries other readers

    viewer = make_napari_viewer()
    viewer.open(str(target), plugin="napari-sam-peft")
    assert [layer.name for layer in viewer.layers] == ["cells", "cells labels"]
    np.testing.assert_array_equal(viewer.layers["cells"].data, cells.image)
    np.testing.assert_array_equal(viewer.layers["cells labels"].data, cells.labels)
