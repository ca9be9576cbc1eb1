"""Train twice from the Finetune widget, the second run continuing the first, and take screenshots.

Run under a virtual screen of the size to show, for example::

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python scripts/continue_screenshots.py --out docs/images

Opens napari on the cells sample with Segment, Dataset and Finetune docked as the demo does (the demo
model), puts two annotated training images and a validation image in the store, clicks Start, waits
for the run's end, annotates one more image, empties the steps field (so the estimate shows what a
continuation is recommended) and writes ``continue_settings_<W>x<H>.png`` (the Finetune dock scrolled to
the "Continue from the live adapter" switch); then clicks Start again and, when that run ends, writes
``continue_history_<W>x<H>.png`` (scrolled to the runs table with its "from" column). Prints what the
widget said.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication, QScrollArea

from napari_sam_peft._qt.dock_layout import _dock_of
from napari_sam_peft.cli.demo import dock_widgets, fit_window_to_screen
from napari_sam_peft.core.data.sample_data import make_sample


def settle(until=lambda: True, seconds: float = 600.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        if until():
            break
        time.sleep(0.02)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)


def scroll_to(finetune, widget) -> None:
    for scroll in finetune.native.findChildren(QScrollArea):
        scroll.verticalScrollBar().setValue(widget.mapTo(scroll.widget(), widget.rect().topLeft()).y() - 40)
    settle(seconds=0.5)


def run_once(finetune) -> None:
    QTest.mouseClick(finetune.start_button.native, Qt.MouseButton.LeftButton)
    settle(lambda: finetune.process is not None and finetune.process.terminal_event is not None)
    settle(lambda: finetune.session.model.reload_pending is None, 30)
    print("status:", finetune.status.value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    viewer = napari.Viewer(title="napari-sam-peft")
    fit_window_to_screen(viewer)
    viewer.open_sample("napari-sam-peft", "cells")
    dock_widgets(viewer, store=folder / "cells.sampeft.zarr", model="demo")
    docks = viewer.window.dock_widgets
    segment = next(w for k, w in docks.items() if "Segment" in k)
    finetune = next(w for k, w in docks.items() if "Finetune" in k)
    settle(lambda: segment.session.model.loaded is not None)
    store = segment.session.annotations.store
    for seed, split in ((1, "train"), (2, "train"), (3, "val")):
        sample = make_sample("cells", seed=seed)
        store.add_labels(sample.image, sample.labels, split=split)
    finetune.runs.refresh()
    finetune.settings.update_data_status()  # the store was filled behind the widgets' backs
    _dock_of(finetune.native).raise_()
    finetune.steps.value = "12"
    finetune.validate_every.value = 4
    finetune.objects.value = 4
    finetune.evaluate.value = False
    finetune.with_decoder.value = False  # short runs: the decoder triples a step's time on a CPU
    run_once(finetune)
    sample = make_sample("cells", seed=7)  # one more annotated image
    store.add_labels(sample.image, sample.labels, split="train")
    finetune.settings.update_data_status()
    finetune.steps.value = ""  # the recommendation for a continuation
    finetune.settings.update_estimate()
    choice = finetune.settings.continuation
    print("continue:", choice.checkbox.value, "|", choice.note.value, "| lr", finetune.lr.value)
    print("estimate:", finetune.estimate.value)
    size = QApplication.primaryScreen().size()
    tag = f"{size.width()}x{size.height()}"
    args.out.mkdir(parents=True, exist_ok=True)
    scroll_to(finetune, finetune.lr.native)
    viewer.window._qt_window.grab().save(str(args.out / f"continue_settings_{tag}.png"))
    finetune.steps.value = "12"
    run_once(finetune)
    print("runs:", finetune.history.data.to_list())
    scroll_to(finetune, finetune.history.native)
    viewer.window._qt_window.grab().save(str(args.out / f"continue_history_{tag}.png"))
    print("wrote", args.out / f"continue_settings_{tag}.png", "and", args.out / f"continue_history_{tag}.png")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
