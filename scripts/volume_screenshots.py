"""Annotate the 3D sample as a user would and take screenshots: one slice, and the 3D canvas.

Run under a virtual screen of the size to show, for example::

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python scripts/volume_screenshots.py --out docs/images

Opens napari, the volume sample (File > Open Sample), docks Segment, Dataset and Finetune as the demo
does, loads the demo model, draws a box on the middle slice of one nucleus, propagates it (Shift+S's
action) and commits it (C's), propagates a second one, then writes ``volume_slice_<W>x<H>.png`` (the
whole window on that slice) and ``volume_3d_<W>x<H>.png`` (the canvas in 3D). Prints what it did.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication, QScrollArea

from napari_sam_peft.cli.demo import dock_widgets, fit_window_to_screen


def settle(until=lambda: True, seconds: float = 120.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        if until():
            break
        time.sleep(0.02)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)


def box_on_middle_slice(segment, truth: np.ndarray, label: int) -> int:
    slices = np.flatnonzero((truth == label).any(axis=(1, 2)))
    z = int(slices[len(slices) // 2])
    rows, cols = np.nonzero(truth[z] == label)
    r0, c0, r1, c1 = rows.min() - 1, cols.min() - 1, rows.max() + 2, cols.max() + 2
    segment.box_layer.add_rectangles(np.array([[z, r0, c0], [z, r0, c1], [z, r1, c1], [z, r1, c0]], float))
    return z


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    viewer = napari.Viewer(title="napari-sam-peft")
    fit_window_to_screen(viewer)
    viewer.open_sample("napari-sam-peft", "volume")
    dock_widgets(viewer, store=Path(tempfile.mkdtemp()) / "volume.sampeft.zarr", model="demo")
    segment = next(w for k, w in viewer.window.dock_widgets.items() if "Segment" in k)
    truth = viewer.layers["nuclei volume (3D) ground truth"].data
    settle(lambda: segment.session.model.loaded is not None)
    for label, commit in ((3, True), (8, False)):
        z = box_on_middle_slice(segment, truth, label)
        viewer.dims.set_current_step(0, z)
        segment.volume_panel.status.value = ""
        segment.volume_panel.propagate()
        settle(lambda: "Propagated" in segment.volume_panel.status.value)
        spans = np.flatnonzero((truth == label).any(axis=(1, 2)))
        print(f"object {label}: box on slice {z}; truth spans {spans[0]}-{spans[-1]}; "
              f"{segment.volume_panel.status.value}")  # fmt: skip
        if commit:
            segment.prompt_panel.commit()
    settle(lambda: not segment.active_workers)
    print("embedding status:", segment.embedding_status.value)
    size = QApplication.primaryScreen().size()
    tag = f"{size.width()}x{size.height()}"
    args.out.mkdir(parents=True, exist_ok=True)
    for scroll in segment.native.findChildren(QScrollArea):  # show the propagation controls, as a user
        scroll.verticalScrollBar().setValue(scroll.verticalScrollBar().maximum())  # scrolls the dock to them
        print("scrolled the Segment dock to", scroll.verticalScrollBar().value())
    settle(seconds=0.5)
    viewer.window._qt_window.grab().save(str(args.out / f"volume_slice_{tag}.png"))
    viewer.dims.ndisplay = 3
    image = viewer.layers["nuclei volume (3D)"]
    image.rendering, image.opacity = "mip", 0.35
    viewer.layers["current_object"].rendering = "iso_categorical"
    viewer.camera.angles = (0, 30, 60)
    viewer.camera.zoom *= 1.15
    settle(seconds=2.0)
    viewer.window._qt_window.grab().save(str(args.out / f"volume_3d_{tag}.png"))
    print("wrote", args.out / f"volume_slice_{tag}.png", "and", args.out / f"volume_3d_{tag}.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
