"""Fixtures for GUI tests: a real napari viewer with the Segment widget docked."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.sam.loading import load_model


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own embedding cache folder and home (where the default store goes)."""
    monkeypatch.setenv("NAPARI_SAM_PEFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def click(button) -> None:
    """Click a magicgui button as a user does: a mouse press and release on the real QPushButton."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    assert button.enabled, f"{button.text!r} is disabled"
    QTest.mouseClick(button.native, Qt.MouseButton.LeftButton)


def press(viewer, key: str, shift: bool = False, target=None) -> None:
    """Press a key on napari's canvas (where keys go while the user works on the image), or on
    ``target`` (a focused dock's widget); then let Qt run what the key started."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    widget = viewer.window._qt_viewer.canvas.native if target is None else target
    modifier = Qt.KeyboardModifier.ShiftModifier if shift else Qt.KeyboardModifier.NoModifier
    QTest.keyClick(widget, getattr(Qt.Key, f"Key_{key.upper()}"), modifier)
    QApplication.processEvents()


def _screen(viewer, row: float, col: float):
    from qtpy.QtCore import QPoint

    canvas = viewer.window._qt_viewer.canvas.native
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    x = (col - camera.center[-1]) * camera.zoom + canvas.width() / 2
    y = (row - camera.center[-2]) * camera.zoom + canvas.height() / 2
    return QPoint(int(round(x)), int(round(y)))


def trigger_menu(viewer, *path: str) -> None:
    """Trigger the menu item at ``path`` (menu titles as shown, without '&')."""
    menus = [a for a in viewer.window._qt_window.menuBar().actions()]
    for depth, title in enumerate(path):
        match = next((a for a in menus if a.text().replace("&", "").startswith(title)), None)
        assert match is not None, f"no menu item {title!r} in {[a.text() for a in menus]}"
        if depth == len(path) - 1:
            match.trigger()
            return
        menu = match.menu()
        menu.aboutToShow.emit()  # napari fills some menus when they open
        menus = menu.actions()


def dock_from_menu(viewer, name: str):
    """Plugins > SAM PEFT > ``name``, as a user opens a dock; returns the widget."""
    trigger_menu(viewer, "Plugins", "SAM PEFT", name)
    return next(w for key, w in viewer.window.dock_widgets.items() if name in key)


def start_short_run(finetune) -> None:
    """Start a run that validates (and so reloads) often and skips the closing evaluation, by the real button."""
    finetune.steps.value = "400"
    finetune.validate_every.value = 2
    finetune.objects.value = 4
    finetune.evaluate.value = False
    click(finetune.start_button)


def click_canvas(viewer, row: float, col: float) -> None:
    """A left click on the canvas at image position (row, col)."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    canvas = viewer.window._qt_viewer.canvas.native
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _screen(viewer, row, col))


def drag_on_canvas(viewer, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Press at ``start``, move to ``end`` and release, in image coordinates (draws a box in add mode)."""
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    canvas = viewer.window._qt_viewer.canvas.native
    a, b = _screen(viewer, *start), _screen(viewer, *end)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    for t in (0.25, 0.5, 0.75, 1.0):
        QTest.mouseMove(canvas, QPoint(int(a.x() + t * (b.x() - a.x())), int(a.y() + t * (b.y() - a.y()))))
        QApplication.processEvents()
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)


@pytest.fixture(scope="session")
def demo_model():
    return load_model("demo", device="cpu")


def wait_for_worker(qtbot, widget, timeout=60_000):
    """Wait until every background job the widget started has finished."""
    qtbot.waitUntil(lambda: not widget.active_workers, timeout=timeout)
    qtbot.wait(20)


def error_messages():
    from napari.utils.notifications import notification_manager

    return [str(record.message) for record in notification_manager.records]


@pytest.fixture
def segment_widget(make_napari_viewer, qtbot, demo_model):
    """A viewer with the nuclei sample, the Segment widget docked from the manifest and the demo model loaded.

    Opened as napari opens it for a user: the widget gets napari's proxy of the viewer, whose
    layers are new proxy objects at each lookup (``is`` between two of them is False).
    """
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-peft", "nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam-peft", "Segment")
    widget.session.embeddings._cache = EmbeddingCache()
    widget.session.model.set_base(demo_model)
    wait_for_worker(qtbot, widget)
    assert widget.embeddings is not None
    return viewer, widget


def place_points(widget, points, labels):
    layer = widget.point_layer
    layer.data = np.asarray(points, dtype=float)
    layer.properties = {"label": np.asarray(labels)}
