"""The whole loop by menus, clicks and keys only, as a user runs it.

File > Open Sample, Plugins > SAM PEFT > Segment and Finetune (no Dataset dock), Load
model, a box drawn with the mouse and points clicked on the canvas, S and C, Start
training (with the instance decoder, the Finetune widget's default), a hot reload, S again
gives a different mask, Stop; then "Next >" opens the next image, and it is pre-segmented at
once with the live adapter's instance decoder (AIS).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests._qt.conftest import (
    click,
    click_canvas,
    dock_from_menu,
    drag_on_canvas,
    press,
    start_short_run,
    trigger_menu,
)

pytestmark = pytest.mark.slow  # the whole loop trains

CELLS = "cells (domain B)"
NUCLEI = "nuclei (domain A)"


def _object_box(truth: np.ndarray, obj: int) -> tuple[tuple[float, float], tuple[float, float]]:
    rows, cols = np.nonzero(truth == obj)
    return (rows.min() - 2.0, cols.min() - 2.0), (rows.max() + 2.0, cols.max() + 2.0)


def _centre(truth: np.ndarray, obj: int) -> tuple[float, float]:
    rows, cols = np.nonzero(truth == obj)
    pick = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
    return float(rows[pick]), float(cols[pick])


@pytest.mark.gui
def test_the_whole_loop_by_menus_clicks_and_keys(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    trigger_menu(viewer, "File", "Open Sample", "SAM PEFT", "Cells, dim and elongated")
    qtbot.waitUntil(lambda: CELLS in viewer.layers, timeout=10_000)
    segment = dock_from_menu(viewer, "Segment")
    finetune = dock_from_menu(viewer, "Finetune")
    assert not any("Dataset" in key for key in viewer.window.dock_widgets)

    segment.model_choice.value = "demo"  # the small model trains in seconds (the default is LiteMedSAM)
    click(segment.load_button)
    qtbot.waitUntil(lambda: segment.embeddings is not None, timeout=120_000)
    truth = viewer.layers[f"{CELLS} ground truth"].data

    # A box drawn with the mouse, then S and C.
    viewer.layers.selection.active = segment.box_layer
    segment.box_layer.mode = "add_rectangle"
    start, end = _object_box(truth, 4)
    drag_on_canvas(viewer, start, end)
    assert len(segment.box_layer.data) == 1
    press(viewer, "s")
    box_mask_before = viewer.layers["current_object"].data > 0
    assert box_mask_before.any()
    press(viewer, "c")

    # Two objects from points clicked on the canvas, each S then C.
    viewer.layers.selection.active = segment.point_layer
    for obj in (1, 2):
        segment.point_layer.mode = "add"
        click_canvas(viewer, *_centre(truth, obj))
        assert len(segment.point_layer.data) == 1
        press(viewer, "s")
        assert viewer.layers["current_object"].data.any()
        press(viewer, "c")
    assert len(np.unique(viewer.layers["committed_objects"].data)) - 1 == 3
    assert segment.session.annotations.store.info()["objects"] == 3  # recorded with no Dataset dock open

    start_short_run(finetune)
    assert finetune.process is not None, "Start training did not start a run"
    qtbot.waitUntil(lambda: finetune.reloads >= 1, timeout=240_000)
    qtbot.waitUntil(lambda: not segment.active_workers and segment.embeddings is not None, timeout=60_000)
    assert segment.session.model.adapter is not None

    viewer.layers.selection.active = segment.box_layer
    segment.box_layer.mode = "add_rectangle"
    drag_on_canvas(viewer, start, end)
    press(viewer, "s")
    box_mask_after = viewer.layers["current_object"].data > 0
    assert not np.array_equal(box_mask_before, box_mask_after), "the adapter did not change the mask"

    click(finetune.stop_button)
    qtbot.waitUntil(lambda: finetune.process.terminal_event is not None, timeout=120_000)
    assert finetune.process.terminal_event.status == "stopped", finetune.process.terminal_event
    qtbot.waitUntil(lambda: finetune.start_button.enabled, timeout=10_000)
    finetune.process.close()

    # The live adapter came with its instance decoder; "Next >" pre-segments the next image with it.
    qtbot.waitUntil(lambda: not segment.active_workers, timeout=60_000)
    session = segment.session
    assert (
        finetune.with_decoder.value and session.model.adapter.has_decoder and session.model.decoder.method == "ais"
    )
    assert "instance decoder" in segment.model_status.value
    trigger_menu(viewer, "File", "Open Sample", "SAM PEFT", "Nuclei, bright and round")
    qtbot.waitUntil(lambda: NUCLEI in viewer.layers, timeout=10_000)
    segment.image_choice.value = CELLS
    click(segment.next_button)
    assert segment.image_choice.value == NUCLEI
    qtbot.waitUntil(lambda: segment.automatic_panel.last_run is not None, timeout=120_000)
    name, method = segment.automatic_panel.last_run
    assert name == NUCLEI and "AIS" in method and "live adapter" in method
    expected = session.model.automatic(viewer.layers[NUCLEI].data, segment.embeddings)  # the live decoder's result
    assert np.array_equal(viewer.layers["auto_segmentation"].data, expected)
    session.model.set_adapter(None)
