"""Smaller things users met: each is a message or a behaviour they see, driven by clicks and keys."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_sam_peft.core.data.sample_data import make_sample
from tests._qt.conftest import click, error_messages, place_points, press, wait_for_worker

NUCLEI = make_sample("nuclei", seed=0)


def _centre(obj):
    rows, cols = np.nonzero(NUCLEI.labels == obj)
    return [rows.mean(), cols.mean()]


def _box(obj):
    rows, cols = np.nonzero(NUCLEI.labels == obj)
    return np.array([[rows.min(), cols.min()], [rows.max(), cols.max()]], dtype=float)


def _messages():
    from napari.utils.notifications import notification_manager

    return [str(r.message) for r in notification_manager.records]


def test_two_boxes_and_a_point_in_single_mode_say_what_to_do(segment_widget):
    viewer, widget = segment_widget
    widget.box_layer.add_rectangles(_box(1))
    widget.box_layer.add_rectangles(_box(2))
    place_points(widget, [_centre(3)], ["positive"])
    press(viewer, "s")
    assert any("2 boxes and 1 point" in m and "batch mode" in m for m in error_messages())
    assert not viewer.layers["current_object"].data.any()  # nothing was dropped silently


def test_a_missing_adapter_file_is_named_as_missing(segment_widget, tmp_path):
    _, widget = segment_widget
    widget.adapter_file.value = tmp_path / "gone.safetensors"
    click(widget.attach_button)
    assert any("gone.safetensors does not exist" in m for m in error_messages())


def test_automatic_segmentation_that_finds_nothing_says_so(segment_widget, qtbot, monkeypatch):
    _, widget = segment_widget
    empty = np.zeros(NUCLEI.labels.shape, dtype=np.uint32)
    monkeypatch.setattr(widget.session.model, "automatic", lambda image, embeddings, progress=None, **_: empty)
    click(widget.auto_button)
    wait_for_worker(qtbot, widget)
    messages = _messages()
    assert any("found no objects" in m and "prompts" in m for m in messages)
    assert not any("found 0 objects" in m for m in messages)


def test_committed_masks_carry_no_stray_specks(segment_widget, monkeypatch):
    from scipy import ndimage

    viewer, widget = segment_widget
    original = widget.session.model.predictor

    def specky(predictor, embeddings, objects):
        mask = NUCLEI.labels == 1
        mask = mask.copy()
        mask[2, 2] = mask[250, 3] = mask[5, 250] = True  # three specks far from the object
        return [mask]

    monkeypatch.setattr("napari_sam_peft.session.live_model.segment_objects", specky)
    place_points(widget, [_centre(1)], ["positive"])
    press(viewer, "s")
    press(viewer, "c")
    assert widget.session.model.predictor is original
    committed = viewer.layers["committed_objects"].data == 1
    assert ndimage.label(committed)[1] == 1
    np.testing.assert_array_equal(committed, NUCLEI.labels == 1)


def test_the_point_marker_is_small_next_to_a_cell(segment_widget):
    _, widget = segment_widget
    cell_diameter = 2 * np.sqrt((NUCLEI.labels == 1).sum() / np.pi)
    assert widget.point_layer.current_size <= cell_diameter / 3


def test_docking_through_napari_warns_about_no_private_attribute(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-peft", "nuclei")
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        _, segment = viewer.window.add_plugin_dock_widget("napari-sam-peft", "Segment")
        _, finetune = viewer.window.add_plugin_dock_widget("napari-sam-peft", "Finetune")
    assert segment.session is finetune.session  # one session per viewer


@pytest.mark.parametrize("rgb_kind", ["stacked", "colour"])
def test_an_rgb_image_segments_and_commits(make_napari_viewer, qtbot, demo_model, rgb_kind):
    from napari_sam_peft._qt.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    grey = NUCLEI.image.astype(np.float32)
    if rgb_kind == "stacked":
        image = np.stack([grey] * 3, axis=-1).astype(np.uint8)
    else:
        image = np.stack([grey, grey * 0.5, 255 - grey], axis=-1).clip(0, 255).astype(np.uint8)
    viewer.add_image(image, name="rgb", rgb=True)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    widget.session.model.set_base(demo_model)
    wait_for_worker(qtbot, widget)
    assert widget.embeddings is not None, error_messages()
    place_points(widget, [_centre(2)], ["positive"])
    press(viewer, "s")
    press(viewer, "c")
    committed = viewer.layers["committed_objects"].data
    assert committed.shape == NUCLEI.labels.shape and (committed == 1).any()
    truth = NUCLEI.labels == 2
    assert ((committed == 1) & truth).sum() / max((committed == 1).sum(), 1) > 0.5
    assert widget.session.annotations.store.info()["objects"] == 1


def test_no_estimate_is_shown_before_a_model_is_loaded(make_napari_viewer, qtbot):
    from napari_sam_peft._qt.finetune_widget import FinetuneWidget

    viewer = make_napari_viewer()
    finetune = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(finetune, name="Finetune")
    assert "load a model" in finetune.estimate.value.lower()
    assert "GiB" not in finetune.estimate.value and " h " not in finetune.estimate.value


@pytest.mark.gui
def test_an_image_opened_after_the_docks_fills_the_canvas_as_napari_shows_a_first_image(make_napari_viewer, qtbot):
    from tests._qt.conftest import dock_from_menu, trigger_menu

    viewer = make_napari_viewer(show=True)
    dock_from_menu(viewer, "Segment")  # its empty prompt layers come first
    trigger_menu(viewer, "File", "Open Sample", "SAM PEFT", "Cells, dim and elongated")
    qtbot.waitUntil(
        lambda: "cells (domain B)" in viewer.layers and "current_object" in viewer.layers, timeout=10_000
    )
    qtbot.waitUntil(lambda: viewer.camera.center[-1] != 255.5, timeout=10_000)  # napari's empty 512 x 512 world
    height, width = viewer.layers["cells (domain B)"].data.shape[:2]
    assert viewer.camera.center[-2:] == pytest.approx(((height - 1) / 2, (width - 1) / 2))
    canvas = viewer.window._qt_viewer.canvas.native
    assert min(canvas.width() / width, canvas.height() / height) * 0.9 <= viewer.camera.zoom  # fits, not a corner
