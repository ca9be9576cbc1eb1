"""Open napari as the demo does and check that the window fits the screen; take a screenshot.

Run under a virtual screen of the size to check, for example::

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python scripts/window_check.py --out docs/images

It prints the screen, window, canvas and dock sizes and which tab is in front, sets a
long status text (an adapter path) to show that no text widens a dock, and writes
``window_<W>x<H>.png`` (the whole screen, as a user sees it). Exit code 1 if the window
does not fit, or the canvas is narrower than half the window.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication, QDockWidget, QTabBar

from napari_sam_peft.cli.demo import dock_widgets, fit_window_to_screen, open_demo_samples


def settle(seconds: float = 1.0) -> None:
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def measure(viewer: napari.Viewer) -> dict:
    window = viewer.window._qt_window
    screen = window.screen().availableGeometry()
    canvas = viewer.window._qt_viewer.canvas.native
    docks = [d for d in window.findChildren(QDockWidget) if d.isVisible()]
    tabs = [bar.tabText(bar.currentIndex()) for bar in window.findChildren(QTabBar) if bar.count() > 1]
    return {
        "screen": (screen.width(), screen.height()),
        "window": (window.frameGeometry().width(), window.frameGeometry().height()),
        "canvas": (canvas.width(), canvas.height()),
        "docks": {d.windowTitle(): (d.width(), d.height()) for d in docks},
        "front tabs": tabs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for window_<W>x<H>.png")
    args = parser.parse_args()

    viewer = napari.Viewer(title="napari-sam-peft")
    fit_window_to_screen(viewer)
    open_demo_samples(viewer, "cells")
    dock_widgets(viewer, store=Path(tempfile.mkdtemp()) / "cells.sampeft.zarr")
    settle(2.0)
    finetune = next(w for k, w in viewer.window.dock_widgets.items() if "Finetune" in k)
    long_path = "/home/someone/projects/" + "very-long-folder-name/" * 8 + "adapter.safetensors"
    from napari_sam_peft._qt.dock_layout import show_text

    show_text(finetune.status, f"Training completed: best validation box IoU 0.612. Adapter: {long_path}")
    viewer.reset_view()
    settle(0.5)
    sizes = measure(viewer)
    for key, value in sizes.items():
        print(f"{key}: {value}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        width, height = sizes["screen"]
        path = args.out / f"window_{width}x{height}.png"
        QApplication.primaryScreen().grabWindow(0).save(str(path))
        print(f"wrote {path}")
        window = viewer.window._qt_window
        for dock in window.findChildren(QDockWidget):
            if dock.windowTitle() in ("Dataset", "Finetune"):
                dock.raise_()
                settle(0.5)
                path = args.out / f"window_{width}x{height}_{dock.windowTitle().lower()}.png"
                QApplication.primaryScreen().grabWindow(0).save(str(path))
                print(f"wrote {path}")
    (sw, sh), (ww, wh), (cw, _) = sizes["screen"], sizes["window"], sizes["canvas"]
    fits = ww <= sw and wh <= sh and cw >= ww / 2
    print("fits" if fits else "DOES NOT FIT")
    viewer.close()
    return 0 if fits else 1


if __name__ == "__main__":
    sys.exit(main())
