"""A new user's first hour, by menus, clicks, keys and the wheel: an image opened after the docks are up
shows its masks above it, a restart on the same store shows every stored object, and scrolling a dock
never changes a setting."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, QPointF, Qt
from qtpy.QtGui import QWheelEvent
from qtpy.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QScrollArea

from napari_sam_peft.core.data.sample_data import make_series
from napari_sam_peft.core.data.store import AnnotationStore
from tests._qt.conftest import dock_from_menu, press, trigger_menu, wait_for_worker

pytestmark = pytest.mark.gui

NUCLEI, CELLS = "nuclei (domain A)", "cells (domain B)"
ANNOTATOR_LAYERS = ("committed_objects", "current_object", "prompts", "point_prompts")


def _centre(labels: np.ndarray, obj: int) -> list[float]:
    rows, cols = np.nonzero(labels == obj)
    pick = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
    return [float(rows[pick]), float(cols[pick])]


def _segment_and_commit(viewer, segment, truth: np.ndarray, obj: int) -> None:
    """A point on object ``obj``, S, C: as a user annotates."""
    segment.point_layer.add(np.array([_centre(truth, obj)]))
    press(viewer, "s")
    assert viewer.layers["current_object"].data.any(), "S gave no mask"
    press(viewer, "c")


def test_an_image_opened_after_the_docks_is_shown_under_the_masks(make_napari_viewer, qtbot, demo_model):
    viewer = make_napari_viewer(show=True)
    trigger_menu(viewer, "File", "Open Sample", "SAM PEFT", "Nuclei, bright and round")
    segment = dock_from_menu(viewer, "Segment")
    segment.session.model.set_base(demo_model)
    wait_for_worker(qtbot, segment)
    _segment_and_commit(viewer, segment, viewer.layers[f"{NUCLEI} ground truth"].data, 1)

    # the second sample, from the menu, after annotating: it is shown, and below the annotator's layers
    trigger_menu(viewer, "File", "Open Sample", "SAM PEFT", "Cells, dim and elongated")
    qtbot.waitUntil(lambda: segment.image_choice.value == CELLS, timeout=10_000)
    wait_for_worker(qtbot, segment)
    assert viewer.layers[CELLS].visible and not viewer.layers[NUCLEI].visible
    names = [layer.name for layer in viewer.layers]
    assert all(names.index(name) > names.index(CELLS) for name in ANNOTATOR_LAYERS), names
    truth = viewer.layers[f"{CELLS} ground truth"].data
    segment.point_layer.add(np.array([_centre(truth, 2)]))
    press(viewer, "s")
    mask = viewer.layers["current_object"]
    assert mask.data.any() and mask.visible
    assert [layer.name for layer in viewer.layers].index("current_object") > names.index(CELLS)


def test_a_restart_on_the_same_store_shows_every_stored_object(make_napari_viewer, qtbot, tmp_path):
    from napari_sam_peft.cli.demo import dock_widgets, open_demo_samples

    store_path = tmp_path / "cells.sampeft.zarr"
    truths = [item.labels for item in make_series("cells", 3)]

    # the first session, as `napari-sam-peft demo --model demo` opens it: two objects on image 1, one on 2
    viewer = make_napari_viewer(show=True)
    open_demo_samples(viewer, "cells")
    dock_widgets(viewer, store=store_path, model="demo")
    segment = next(w for key, w in viewer.window.dock_widgets.items() if "Segment" in key)
    wait_for_worker(qtbot, segment)
    first = segment.image_choice.value
    for obj in (1, 3):
        _segment_and_commit(viewer, segment, truths[0], obj)
    press(viewer, "n")
    wait_for_worker(qtbot, segment)
    _segment_and_commit(viewer, segment, truths[1], 2)
    viewer.close()

    stored = {image.name: image for image in AnnotationStore(store_path).snapshot().images}
    assert [len(stored[name].objects) for name in sorted(stored)] == [2, 1]

    # start again on the same store: every image opens with exactly what the store holds for it
    viewer = make_napari_viewer(show=True)
    open_demo_samples(viewer, "cells")
    dock_widgets(viewer, store=store_path, model="demo")
    segment = next(w for key, w in viewer.window.dock_widgets.items() if "Segment" in key)
    store = AnnotationStore(store_path)
    for _ in range(3):
        wait_for_worker(qtbot, segment)
        name = segment.image_choice.value
        shown = viewer.layers["committed_objects"].data
        expected = store.labels(stored[name]) if name in stored else np.zeros_like(shown)
        assert np.array_equal(shown > 0, expected > 0), f"{name}: {np.unique(shown)} vs {np.unique(expected)}"
        press(viewer, "n")
    assert segment.image_choice.value == first
    dataset = next(w for key, w in viewer.window.dock_widgets.items() if "Dataset" in key)
    finetune = next(w for key, w in viewer.window.dock_widgets.items() if "Finetune" in key)
    # one count of objects in every dock
    assert "3 objects" in dataset.store_panel.summary.value
    assert "Training data: 3 objects" in segment.store_status.value.replace("\u200b", "")
    info = store.info()
    assert f"{info['train_objects']} training objects" in finetune.data_status.value


def _wheel(widget, steps: int = -3) -> None:
    """Turn the mouse wheel over ``widget`` (as Qt hands it on from the child under the pointer)."""
    local = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(
        local,
        QPointF(widget.mapToGlobal(local.toPoint())),
        QPoint(0, 0),
        QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)
    QApplication.processEvents()


def _settings(native) -> dict[int, str]:
    fields = native.findChildren((QComboBox, QAbstractSpinBox))
    return {id(f): f.currentText() if isinstance(f, QComboBox) else f.text() for f in fields}


def test_the_mouse_wheel_over_the_finetune_dock_changes_no_setting(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    finetune = dock_from_menu(viewer, "Finetune")
    native = finetune.native
    before = _settings(native)
    fields = native.findChildren((QComboBox, QAbstractSpinBox))
    assert len(fields) >= 4  # preset, recipe, device, precision, ...
    scrolled = native.findChild(QScrollArea).verticalScrollBar()
    for field in fields:
        _wheel(field)
    assert _settings(native) == before
    assert scrolled.maximum() == 0 or scrolled.value() > 0  # the wheel scrolled the dock instead

    # a setting the user focused (a click opens a drop-down's list; Tab focuses it) still takes the wheel
    recipe = finetune.recipe.native
    viewer.window._qt_window.activateWindow()
    recipe.setFocus()
    qtbot.waitUntil(recipe.hasFocus)
    value = finetune.recipe.value
    _wheel(recipe, steps=-1)
    assert finetune.recipe.value != value
