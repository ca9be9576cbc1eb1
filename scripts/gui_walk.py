"""Walk the Segment widget on a real model in a real napari window and take screenshots.

Clicks the real buttons: Load (the model), Segment (a box around a true object), Automatic,
Attach (an adapter: the hot reload), Segment again, then a large image that is tiled. Prints
every napari notification and the time of each step; writes ``walk_<W>x<H>_<step>.png``.
Run under a virtual screen of the size to check, for example::

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python scripts/gui_walk.py \\
        --model lite_medsam --adapter /tmp/demo/demo_cells_adapter.safetensors --out /tmp/shots
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import napari
import numpy as np
from napari.utils.notifications import notification_manager
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication

from napari_sam_peft.cli.demo import fit_window_to_screen, open_demo_samples


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


def click(button) -> None:
    QTest.mouseClick(button.native, Qt.MouseButton.LeftButton)


def box_around(truth: np.ndarray, obj: int) -> np.ndarray:
    rows, cols = np.nonzero(truth == obj)
    r0, c0, r1, c1 = rows.min() - 2, cols.min() - 2, rows.max() + 2, cols.max() + 2
    return np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], dtype=float)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lite_medsam")
    parser.add_argument("--adapter", type=Path, help="an adapter for --model, attached to show the hot reload")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    notification_manager.notification_ready.connect(lambda n: print(f"  notification: {n.message}", flush=True))

    from napari_sam_peft._qt.dataset_widget import DatasetWidget
    from napari_sam_peft._qt.finetune_widget import FinetuneWidget
    from napari_sam_peft._qt.segment_widget import SegmentWidget
    from napari_sam_peft.core.data.sample_data import make_sample

    viewer = napari.Viewer(title="napari-sam-peft")
    fit_window_to_screen(viewer)
    open_demo_samples(viewer, "cells")
    large = make_sample("cells", 7, shape=(768, 768))
    viewer.add_image(large.image, name="large cells 768 px")
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment", area="right")
    viewer.window.add_dock_widget(DatasetWidget(viewer), name="Dataset", area="right", tabify=True)
    viewer.window.add_dock_widget(FinetuneWidget(viewer), name="Finetune", area="right", tabify=True)
    settle(1.0)
    width, height = QApplication.primaryScreen().size().width(), QApplication.primaryScreen().size().height()

    def shot(step: str) -> None:
        viewer.reset_view()
        settle(0.8)
        path = args.out / f"walk_{width}x{height}_{step}.png"
        QApplication.primaryScreen().grabWindow(0).save(str(path))
        print(f"wrote {path}", flush=True)

    def segment_box(truth: np.ndarray, obj: int) -> None:
        segment.box_layer.data = []
        segment.box_layer.add_rectangles([box_around(truth, obj)])
        click(segment.segment_button)
        wait_for(
            lambda: "current_object" in viewer.layers and viewer.layers["current_object"].data.any(), 60, "mask"
        )

    names = [layer.name for layer in viewer.layers]
    first = next(name for name in names if name.startswith("cells (domain B)") and "truth" not in name)
    segment.image_choice.value = first
    segment.model_choice.value = args.model
    start = time.monotonic()
    click(segment.load_button)
    seconds = wait_for(lambda: segment.embeddings is not None, 300, "the model and embeddings")
    print(f"load + embed {first}: {time.monotonic() - start:.1f} s ({seconds:.1f} s waited)", flush=True)
    truth = viewer.layers[f"{first} ground truth"].data
    segment_box(truth, 3)
    print(f"box mask: {int((viewer.layers['current_object'].data > 0).sum())} px", flush=True)
    shot("1_box")

    start = time.monotonic()
    click(segment.auto_button)
    wait_for(lambda: not segment.active_workers, 600, "automatic segmentation")
    print(f"automatic segmentation: {time.monotonic() - start:.1f} s", flush=True)
    shot("2_automatic")

    if args.adapter is not None:
        segment.adapter_file.value = args.adapter
        start = time.monotonic()
        click(segment.attach_button)
        wait_for(lambda: segment.session.model.adapter is not None, 120, "the adapter")
        wait_for(lambda: not segment.active_workers and segment.embeddings is not None, 300, "re-embedding")
        print(f"attach adapter + re-embed: {time.monotonic() - start:.1f} s", flush=True)
        segment_box(truth, 3)
        print(f"box mask with adapter: {int((viewer.layers['current_object'].data > 0).sum())} px", flush=True)
        shot("3_adapter")

    start = time.monotonic()
    segment.image_choice.value = "large cells 768 px"
    wait_for(lambda: segment.embeddings is not None and not segment.active_workers, 600, "tiled embeddings")
    print(f"tiled embeddings of 768 px: {time.monotonic() - start:.1f} s", flush=True)
    segment_box(large.labels, 5)
    shot("4_tiled")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
