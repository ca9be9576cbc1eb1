"""Every key the Segment widget binds, delivered as napari delivers it.

Keys go through Qt's event system (``QTest.keyClick``) to the canvas's native widget, with
each kind of layer selected, and to the focused widget of each dock (napari's main window
forwards a key a dock does not use to the canvas), before and after switching images.
pytest-qt fails a test on any exception raised inside a Qt event, such as vispy's
"EventEmitter loop detected!".
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QApplication, QDockWidget

from napari_sam_peft.core.data.sample_data import make_sample
from tests._qt.conftest import click_canvas, error_messages, press, wait_for_worker

pytestmark = pytest.mark.gui

NUCLEI = make_sample("nuclei", seed=0)


def _centre_of(obj_id: int) -> list[float]:
    rows, cols = np.nonzero(NUCLEI.labels == obj_id)
    return [float(rows.mean()), float(cols.mean())]


def _committed(viewer) -> int:
    return len(np.unique(viewer.layers["committed_objects"].data)) - 1


def _press_every_key(viewer, widget, qtbot, target=None) -> None:
    """S, C, U, T, Shift+C, N and Shift+N, each checked by what a user sees change."""
    points = widget.point_layer
    before, shown_before = _committed(viewer), len(error_messages())
    points.add(np.array([_centre_of(1)]))
    press(viewer, "s", target=target)
    assert viewer.layers["current_object"].data.any(), "S did not segment"
    press(viewer, "c", target=target)
    assert _committed(viewer) == before + 1, "C did not commit"
    assert len(points.data) == 0
    press(viewer, "u", target=target)
    assert _committed(viewer) == before, "U did not undo"
    press(viewer, "t", target=target)
    assert points.feature_defaults["label"][0] == "negative", "T did not toggle"
    press(viewer, "t", target=target)
    assert points.feature_defaults["label"][0] == "positive", "T did not toggle back"
    points.add(np.array([_centre_of(2)]))
    press(viewer, "c", shift=True, target=target)
    assert len(points.data) == 0, "Shift+C did not clear the prompts"
    shown = widget.image_choice.value
    press(viewer, "n", target=target)
    wait_for_worker(qtbot, widget)
    assert widget.image_choice.value != shown, "N did not show the next image"
    press(viewer, "n", shift=True, target=target)
    wait_for_worker(qtbot, widget)
    assert widget.image_choice.value == shown, "Shift+N did not go back"
    assert not [m for m in error_messages()[shown_before:] if "Traceback" in m or "loop detected" in m]


@pytest.fixture
def annotator(segment_widget, qtbot):
    """The Segment widget with a second image (N has somewhere to go) and the other two docks."""
    viewer, widget = segment_widget
    viewer.add_image(NUCLEI.image, name="nuclei copy")
    qtbot.waitUntil(lambda: widget.image_choice.value == "nuclei copy")  # a new image is shown
    viewer.window.add_plugin_dock_widget("napari-sam-peft", "Dataset", tabify=True)
    viewer.window.add_plugin_dock_widget("napari-sam-peft", "Finetune", tabify=True)
    widget.image_choice.value = "nuclei (domain A)"
    wait_for_worker(qtbot, widget)
    viewer.window._qt_window.activateWindow()
    return viewer, widget


@pytest.mark.parametrize(
    "selected", ["nuclei (domain A)", "committed_objects", "point_prompts", "prompts"], ids=lambda s: s.split()[0]
)
def test_every_key_works_on_the_canvas_whichever_layer_is_selected(annotator, qtbot, selected):
    viewer, widget = annotator
    viewer.layers.selection.active = viewer.layers[selected]
    _press_every_key(viewer, widget, qtbot)
    press(viewer, "n")  # and once more on the other image
    wait_for_worker(qtbot, widget)
    _press_every_key(viewer, widget, qtbot)


@pytest.mark.parametrize("dock_title", ["Segment", "Dataset", "Finetune"])
def test_every_key_works_from_a_focused_dock(annotator, qtbot, dock_title):
    viewer, widget = annotator
    docks = viewer.window._qt_window.findChildren(QDockWidget)
    dock = next(d for d in docks if d.windowTitle().startswith(dock_title))
    dock.raise_()
    dock.widget().setFocus()  # what a click on the dock's background does
    QApplication.processEvents()
    focused = QApplication.focusWidget() or dock.widget()
    assert dock.isAncestorOf(focused)
    _press_every_key(viewer, widget, qtbot, target=focused)


def test_t_switches_the_next_point_and_leaves_the_point_just_placed(annotator):
    """napari selects a point it has just added; T must not relabel it (only the next one)."""
    viewer, widget = annotator
    points = widget.point_layer
    viewer.layers.selection.active = points
    points.mode = "add"
    click_canvas(viewer, *_centre_of(1))
    assert list(points.properties["label"]) == ["positive"]
    press(viewer, "t")
    assert list(points.properties["label"]) == ["positive"]
    click_canvas(viewer, *_centre_of(2))
    assert list(points.properties["label"]) == ["positive", "negative"]
    colors = points.border_color
    assert not np.allclose(colors[0], colors[1]), "the negative point is drawn in the positive colour"


def test_a_key_whose_action_makes_qt_deliver_another_key_does_not_loop(make_napari_viewer, qtbot):
    """An action that runs Qt's event loop while it works (a dialog, a progress bar) can get the
    next key delivered meanwhile; inside vispy's key event that raised "EventEmitter loop detected!"."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_sam_peft._qt.prompt_layers import KeyBindings

    viewer = make_napari_viewer()
    canvas = viewer.window._qt_viewer.canvas.native
    pressed: list[str] = []

    def slow_action() -> None:
        pressed.append("t")
        QTest.keyClick(canvas, Qt.Key.Key_X)  # the user's next key, delivered while T's action runs

    bindings = KeyBindings(viewer, {"t": slow_action, "x": lambda: pressed.append("x")})
    press(viewer, "t")
    qtbot.waitUntil(lambda: pressed == ["t", "x"])
    bindings.disconnect()
