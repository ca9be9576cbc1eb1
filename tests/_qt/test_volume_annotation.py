"""A volume in napari by menus, clicks and keys: a box on a middle slice, Shift+S, C, and a hot reload."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from tests._qt.conftest import (
    click,
    dock_from_menu,
    drag_on_canvas,
    error_messages,
    press,
    trigger_menu,
    wait_for_worker,
)

VOLUME = "nuclei volume (3D)"

pytestmark = pytest.mark.gui


def _middle_box(truth: np.ndarray, label: int) -> tuple[int, tuple[float, float], tuple[float, float]]:
    slices = np.flatnonzero((truth == label).any(axis=(1, 2)))
    z = int(slices[len(slices) // 2])
    rows, cols = np.nonzero(truth[z] == label)
    return z, (rows.min() - 1.0, cols.min() - 1.0), (rows.max() + 2.0, cols.max() + 2.0)


def _open_volume(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    trigger_menu(viewer, "File", "Open Sample", "SAM PEFT", "Nuclei volume, 3D")
    qtbot.waitUntil(lambda: VOLUME in viewer.layers, timeout=10_000)
    segment = dock_from_menu(viewer, "Segment")
    segment.model_choice.value = "demo"
    click(segment.load_button)
    qtbot.waitUntil(lambda: segment.session.model.loaded is not None, timeout=120_000)
    return viewer, segment, viewer.layers[f"{VOLUME} ground truth"].data


def _box_then_propagate(viewer, qtbot, segment, z, start, end) -> np.ndarray:
    viewer.dims.set_current_step(0, z)
    qtbot.waitUntil(lambda: f"Slice {z} is ready" in segment.embedding_status.value or "all" in
                    segment.embedding_status.value, timeout=60_000)  # fmt: skip
    viewer.layers.selection.active = segment.box_layer
    segment.box_layer.mode = "add_rectangle"
    drag_on_canvas(viewer, start, end)
    assert len(segment.box_layer.data) == 1 and round(segment.box_layer.data[0][0, 0]) == z  # on this slice
    segment.volume_panel.status.value = ""  # so the wait below sees this propagation's line, not the last one's
    press(viewer, "s", shift=True)
    qtbot.waitUntil(lambda: "Propagated through slices" in segment.volume_panel.status.value, timeout=120_000)
    return viewer.layers["current_object"].data > 0


def test_a_box_on_a_middle_slice_propagates_through_the_object_and_commits_one_3d_object(
    make_napari_viewer, qtbot, tmp_path
):
    viewer, segment, truth = _open_volume(make_napari_viewer, qtbot)
    assert segment.propagate_button.visible and segment.box_layer.ndim == 3
    # the first prompt waits for the slice on screen, not for the volume
    qtbot.waitUntil(lambda: "is ready to prompt" in segment.embedding_status.value or "all" in
                    segment.embedding_status.value, timeout=60_000)  # fmt: skip
    label = 3
    z, start, end = _middle_box(truth, label)
    mask = _box_then_propagate(viewer, qtbot, segment, z, start, end)
    spans = np.flatnonzero((truth == label).any(axis=(1, 2)))
    segmented = np.flatnonzero(mask.any(axis=(1, 2)))
    assert len(segmented) > 2, "the mask did not go beyond the slice with the box"
    assert spans[0] - 2 <= segmented[0] and segmented[-1] <= spans[-1] + 2, (spans, segmented)
    assert (mask & (truth == label)).sum() / (mask | (truth == label)).sum() > 0.6

    press(viewer, "c")
    committed = viewer.layers["committed_objects"].data
    assert committed.shape == truth.shape and len(np.unique(committed)) == 2
    assert not viewer.layers["current_object"].data.any() and len(segment.box_layer.data) == 0
    (stored,) = segment.session.annotations.store.snapshot().images
    assert stored.volume and len(stored.objects) == 1
    assert stored.objects[0].prompts["slice"] == z and stored.objects[0].prompts["box"] is not None
    press(viewer, "u")
    assert not viewer.layers["committed_objects"].data.any()
    wait_for_worker(qtbot, segment)
    assert not [m for m in error_messages() if "Traceback" in m]


def test_stop_ends_a_propagation_and_keeps_the_current_object(make_napari_viewer, qtbot):
    viewer, segment, truth = _open_volume(make_napari_viewer, qtbot)
    z, start, end = _middle_box(truth, 3)
    viewer.dims.set_current_step(0, z)
    viewer.layers.selection.active = segment.box_layer
    segment.box_layer.mode = "add_rectangle"
    drag_on_canvas(viewer, start, end)
    press(viewer, "s", shift=True)
    click(segment.stop_propagation_button)
    qtbot.waitUntil(lambda: not segment.volume_panel.running, timeout=120_000)
    status = segment.volume_panel.status.value
    assert "stopped" in status or "Propagated" in status  # it may have finished before the click landed
    if "stopped" in status:
        assert not viewer.layers["current_object"].data.any()


@pytest.mark.slow  # trains in a worker process
def test_training_on_the_volume_reloads_and_the_same_box_then_propagates_another_mask(make_napari_viewer, qtbot):
    viewer, segment, truth = _open_volume(make_napari_viewer, qtbot)
    finetune = dock_from_menu(viewer, "Finetune")
    z, start, end = _middle_box(truth, 3)
    before = _box_then_propagate(viewer, qtbot, segment, z, start, end)
    press(viewer, "c")
    for label in (5, 8):  # two more 3D objects: the run holds out the top z-range for validation
        other = _middle_box(truth, label)
        _box_then_propagate(viewer, qtbot, segment, *other)
        press(viewer, "c")
    assert segment.session.annotations.store.info()["objects"] == 3
    qtbot.waitUntil(lambda: "slices to train on" in finetune.data_status.value, timeout=10_000)
    # the recommended step count counts each 3D object once per slice, as the run's samples do
    info = segment.session.annotations.store.info()
    field = finetune.steps.native  # emptied by the keyboard, as a user leaves it to the recommendation
    field.setFocus()
    qtbot.keyClick(field, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(field, Qt.Key.Key_Delete)
    expected = (
        f"recommended for {info['train_objects']} training objects, seen on {info['train_samples']} training "
        f"slices and images as {info['train_sample_objects']} outlines"
    )
    qtbot.waitUntil(lambda: expected in finetune.estimate.value, timeout=10_000)

    # a short run that validates (and so reloads) every 2 steps, with the closing evaluation
    finetune.steps.value = "8"
    finetune.validate_every.value = 2
    finetune.objects.value = 4
    finetune.evaluate.value = True
    click(finetune.start_button)
    assert finetune.process is not None, "Start training did not start a run"
    qtbot.waitUntil(lambda: finetune.reloads >= 1, timeout=240_000)
    assert segment.session.model.adapter is not None
    after = _box_then_propagate(viewer, qtbot, segment, z, start, end)
    assert not np.array_equal(before, after), "the reloaded adapter did not change the propagated mask"

    qtbot.waitUntil(lambda: finetune.process.terminal_event is not None, timeout=600_000)
    assert finetune.process.terminal_event.event == "finished", finetune.process.terminal_event
    # the evaluation table has the 3D scores, measured on the held-out z-range
    table = finetune.evaluation_table.native
    qtbot.waitUntil(lambda: table.rowCount() > 4, timeout=10_000)
    metrics = [table.verticalHeaderItem(row).text() for row in range(table.rowCount())]
    assert metrics[-2:] == ["3D", "3D AIS"], metrics
    assert "z-range" in finetune.evaluated_on.value
    finetune.process.close()
    wait_for_worker(qtbot, segment)
