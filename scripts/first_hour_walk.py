"""A new user's first hour in a real napari window, with screenshots: your own tif through File > Open
after the docks are up, a box and S, C, a short training run with its hot reload, quit, start again on
the same store, open the tif again and see what the store holds.

The window is the demo's (``napari-sam-peft demo``: generated cells, the three docks, a store). The
file dialog is answered with the tif's path, the box is dragged with the mouse on the canvas, keys are
pressed on the canvas and buttons clicked. Run under a virtual screen of the size to check::

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python scripts/first_hour_walk.py --out /tmp/walk

It prints every notification, each step's time and what the store holds; writes
``first_hour_<W>x<H>_<step>.png`` (the whole screen).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import napari
import numpy as np
import tifffile
from napari.utils.notifications import notification_manager
from qtpy.QtCore import QPoint, Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication, QFileDialog

from napari_sam_peft.cli.demo import dock_widgets, fit_window_to_screen, open_demo_samples
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore

MY_IMAGE = "my_nuclei"


def settle(seconds: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def wait_for(condition, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        settle(0.1)
    return time.monotonic() - start


def trigger_menu(viewer, *path: str) -> None:
    actions = viewer.window._qt_window.menuBar().actions()
    for depth, title in enumerate(path):
        match = next(a for a in actions if a.text().replace("&", "").startswith(title))
        if depth == len(path) - 1:
            match.trigger()
            return
        match.menu().aboutToShow.emit()
        actions = match.menu().actions()


def screen_point(viewer, row: float, col: float) -> QPoint:
    canvas = viewer.window._qt_viewer.canvas.native
    camera = viewer.camera
    x = (col - camera.center[-1]) * camera.zoom + canvas.width() / 2
    y = (row - camera.center[-2]) * camera.zoom + canvas.height() / 2
    return QPoint(int(round(x)), int(round(y)))


def drag_box(viewer, layer, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Select the ``prompts`` layer, its rectangle tool, and drag a box with the mouse."""
    viewer.layers.selection.active = layer
    layer.mode = "add_rectangle"
    canvas = viewer.window._qt_viewer.canvas.native
    a, b = screen_point(viewer, *start), screen_point(viewer, *end)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    for t in (0.25, 0.5, 0.75, 1.0):
        QTest.mouseMove(canvas, QPoint(int(a.x() + t * (b.x() - a.x())), int(a.y() + t * (b.y() - a.y()))))
        settle(0.05)
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    settle(0.2)


def press(viewer, key: str) -> None:
    QTest.keyClick(viewer.window._qt_viewer.canvas.native, getattr(Qt.Key, f"Key_{key.upper()}"))
    settle(0.3)


def open_tif(viewer, path: Path) -> None:
    """File > Open File(s)..., the dialog answered with ``path`` (as a user picks it)."""
    original = QFileDialog.getOpenFileNames
    QFileDialog.getOpenFileNames = staticmethod(lambda *a, **k: ([str(path)], ""))  # type: ignore[method-assign]
    try:
        trigger_menu(viewer, "File", "Open File")
    finally:
        QFileDialog.getOpenFileNames = original  # type: ignore[method-assign]


def start_window(store: Path, model: str):
    viewer = napari.Viewer(title="napari-sam-peft demo")
    fit_window_to_screen(viewer)
    open_demo_samples(viewer, "cells")
    dock_widgets(viewer, store=store, model=model)
    docks = {key.split(" ")[0]: widget for key, widget in viewer.window.dock_widgets.items()}
    segment = next(w for k, w in docks.items() if k.startswith("Segment"))
    finetune = next(w for k, w in docks.items() if k.startswith("Finetune"))
    wait_for(lambda: segment.embeddings is not None and not segment.active_workers, 300, "the first embeddings")
    return viewer, segment, finetune


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lite_medsam")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/first_hour"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    store_path = args.workdir / "cells.sampeft.zarr"
    mine = make_sample("nuclei", seed=11)
    tif = args.workdir / f"{MY_IMAGE}.tif"
    tifffile.imwrite(tif, mine.image)
    notification_manager.notification_ready.connect(lambda n: print(f"  notification: {n.message}", flush=True))

    viewer, segment, finetune = start_window(store_path, args.model)
    width, height = QApplication.primaryScreen().size().width(), QApplication.primaryScreen().size().height()

    def shot(step: str) -> None:
        settle(0.8)
        path = args.out / f"first_hour_{width}x{height}_{step}.png"
        QApplication.primaryScreen().grabWindow(0).save(str(path))
        print(f"wrote {path}", flush=True)

    shot("1_docks_up")
    start = time.monotonic()
    open_tif(viewer, tif)
    wait_for(lambda: segment.image_choice.value == MY_IMAGE, 30, "the opened tif to be shown")
    wait_for(lambda: segment.embeddings is not None and not segment.active_workers, 300, "its embeddings")
    print(f"File > Open {tif.name}: shown and embedded in {time.monotonic() - start:.1f} s", flush=True)
    print("layers, top first:", [layer.name for layer in reversed(viewer.layers)], flush=True)
    viewer.reset_view()
    shot("2_opened")
    for obj in (2, 5):
        rows, cols = np.nonzero(mine.labels == obj)
        drag_box(viewer, segment.box_layer, (rows.min() - 2, cols.min() - 2), (rows.max() + 2, cols.max() + 2))
        press(viewer, "s")
        print(f"S on object {obj}: {int((viewer.layers['current_object'].data > 0).sum())} px", flush=True)
        if obj == 2:
            shot("3_segmented")
        press(viewer, "c")
    shot("4_committed")

    finetune.steps.value = "8"
    finetune.validate_every.value = 2
    finetune.evaluate.value = False
    start = time.monotonic()
    QTest.mouseClick(finetune.start_button.native, Qt.MouseButton.LeftButton)
    run = finetune.run
    wait_for(lambda: run.process is not None and run.process.terminal_event is not None, 1800, "training")
    wait_for(lambda: finetune.session.model.reload_pending is None and not segment.active_workers, 300, "reload")
    print(f"training 8 steps: {time.monotonic() - start:.1f} s; {finetune.status.value}", flush=True)
    print(f"Segment dock: {segment.model_status.value}", flush=True)
    shot("5_trained")
    viewer.close()
    settle(1.0)

    held = {i.name: len(i.objects) for i in AnnotationStore(store_path).snapshot().images}
    print(f"the store holds: {held}", flush=True)
    viewer, segment, finetune = start_window(store_path, args.model)
    open_tif(viewer, tif)
    wait_for(lambda: segment.image_choice.value == MY_IMAGE, 30, "the opened tif to be shown")
    wait_for(lambda: segment.embeddings is not None and not segment.active_workers, 300, "its embeddings")
    shown = len(np.unique(viewer.layers["committed_objects"].data)) - 1
    print(f"after the restart {MY_IMAGE} shows {shown} committed objects (the store: {held.get(MY_IMAGE)})")
    viewer.reset_view()
    shot("6_restarted")
    viewer.close()
    return 0 if shown == held.get(MY_IMAGE) else 1


if __name__ == "__main__":
    sys.exit(main())
