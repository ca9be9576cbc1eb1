"""The Dataset widget and the store reader/writer in a real napari viewer."""

from __future__ import annotations

import numpy as np

from napari_sam_peft.core.sample_data import make_sample
from napari_sam_peft.core.store import AnnotationStore
from tests.plugin.conftest import error_messages, place_points

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
    segment.segment()
    segment.commit()
    place_points(segment, [_centre(2)], ["positive"])
    segment.segment()
    segment.commit()

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

    segment.undo_commit()
    assert len(store.snapshot().images[0].objects) == 1


def test_remove_selected_object_and_set_split(segment_widget, tmp_path):
    viewer, segment = segment_widget
    dataset = _dataset(viewer, tmp_path)
    place_points(segment, [_centre(1)], ["positive"])
    segment.segment()
    segment.commit()
    viewer.layers["committed_objects"].selected_label = 1
    dataset.remove_selected_object()
    assert dataset.store.info()["objects"] == 0

    dataset.store_image.value = dataset.store.snapshot().images[0].image_id
    dataset.split.value = "val"
    dataset.split_button.changed.emit(True)
    assert dataset.store.info()["val_images"] == 1


def test_automatic_objects_are_marked_edited_or_not(segment_widget, tmp_path, qtbot, monkeypatch):
    from tests.plugin.conftest import wait_for_worker

    viewer, segment = segment_widget
    dataset = _dataset(viewer, tmp_path)
    proposal = (NUCLEI.labels * (NUCLEI.labels <= 2)).astype(np.uint32)
    monkeypatch.setattr(segment.session, "automatic", lambda image, embeddings, progress=None: proposal)
    segment.run_automatic()
    wait_for_worker(qtbot, segment)
    auto = viewer.layers["auto_segmentation"]
    edited = auto.data.copy()
    rows, cols = np.nonzero(edited == 2)
    edited[rows[0], cols[0]] = 0  # the user touches object 2
    auto.data = edited
    segment.commit_automatic()
    sources = sorted(o.source for o in dataset.store.snapshot().images[0].objects)
    assert sources == ["automatic", "automatic-edited"]


def test_import_from_layers_and_bad_labels_notify(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-peft", "cells")
    dataset = _dataset(viewer, tmp_path)
    dataset.import_image.value = "cells (domain B)"
    dataset.import_labels.value = "cells (domain B) ground truth"
    dataset.import_button.changed.emit(True)
    cells = make_sample("cells", seed=0)
    assert dataset.store.info()["objects"] == cells.labels.max()

    viewer.add_labels(np.zeros((10, 10), dtype=np.uint8), name="wrong")
    dataset.import_labels.value = "wrong"
    dataset.import_button.changed.emit(True)
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
