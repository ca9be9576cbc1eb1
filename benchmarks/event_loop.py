"""How long napari's event loop stalls while a training run goes and its adapters reload live.

napari with the cells sample and the three docks opened from the manifest, the demo model (or
``--model``), objects imported as training data; a Qt timer ticks every 10 ms while "Start
training" runs ``--steps`` steps (validation every 2, each new best adapter attached to the
live model and the image re-embedded). The table gives the timer's gaps: a gap is how long the
event loop could not serve the user (a click, a key, a repaint). The test suite asserts the
behaviour (the reload happens, the loop keeps serving); the figures are measured here.

Run under an X server: ``xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/event_loop.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo", help="demo (default) or lite_medsam")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2, help="training runs, one after the other")
    args = parser.parse_args()
    os.environ.setdefault("QT_API", "pyqt6")
    os.environ.setdefault("NAPARI_SAM_PEFT_CACHE", tempfile.mkdtemp(prefix="event-loop-cache-"))

    import napari
    from qtpy.QtCore import Qt, QTimer
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-sam-peft", "cells")
    docks = ("Segment", "Dataset", "Finetune")
    segment, dataset, finetune = (viewer.window.add_plugin_dock_widget("napari-sam-peft", d)[1] for d in docks)

    def wait_until(condition) -> None:
        while not condition():
            QApplication.processEvents()
            time.sleep(0.005)

    from napari_sam_peft.core.data.sample_data import make_sample

    segment.model_choice.value = args.model
    QTest.mouseClick(segment.load_button.native, Qt.MouseButton.LeftButton)
    wait_until(lambda: segment.embeddings is not None and not segment.active_workers)
    store = dataset.open_store(Path(tempfile.mkdtemp(prefix="event-loop-")) / "cells.sampeft.zarr")
    for seed, split in ((1, "train"), (2, "train"), (5, "val")):
        sample = make_sample("cells", seed=seed)
        store.add_labels(sample.image, sample.labels, name=f"cells {seed}", split=split)
    dataset.refresh()
    finetune.steps.value = str(args.steps)
    finetune.validate_every.value = 2
    finetune.evaluate.value = False

    rows = []
    for run in range(args.runs):
        stamps: list[float] = []
        timer = QTimer()
        timer.setInterval(10)
        timer.timeout.connect(lambda stamps=stamps: stamps.append(time.perf_counter()))
        timer.start()
        reloads = finetune.reloads
        clicked = time.perf_counter()
        QTest.mouseClick(finetune.start_button.native, Qt.MouseButton.LeftButton)
        wait_until(lambda: finetune.process.terminal_event is not None and not finetune._timer.isActive())
        wait_until(lambda: not segment.active_workers)
        timer.stop()
        gaps = np.diff(stamps) * 1000
        at = stamps[int(np.argmax(gaps))] - clicked  # when the longest gap began, after the click
        median, p99 = np.percentile(gaps, [50, 99])
        rows.append((run + 1, len(stamps), finetune.reloads - reloads, median, p99, gaps.max(), at))
    viewer.close()

    cpu = platform.processor() or platform.machine()
    python = sys.version.split()[0]
    print(f"model {args.model}, {args.steps} steps per run; {os.cpu_count()} CPUs ({cpu}); Python {python}")
    columns = ["run", "timer ticks", "adapters reloaded", "median gap (ms)", "p99 gap (ms)", "longest gap (ms)"]
    print("| " + " | ".join([*columns, "it began (s after Start)"]) + " |")
    print("|---|---|---|---|---|---|---|")
    for run, ticks, reloaded, median, p99, longest, at in rows:
        print(f"| {run} | {ticks} | {reloaded} | {median:.0f} | {p99:.0f} | {longest:.0f} | {at:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
