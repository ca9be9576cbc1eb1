"""Time from Start to the first hot reload, in a real napari window, with the Finetune dock's defaults.

The demo's window (generated cells, the three docks, LiteMedSAM) on a store holding three annotated
cell images (seeds 0-2, 58 objects; seed 2 in the validation split) and nothing else changed in the
Finetune dock: the preset, recipe, steps and validation the dock recommends on this machine, the
instance decoder and the end-of-run evaluation on, as a new user starts a run. The Start button is
clicked with the mouse; the clock stops when the Segment dock's model line says an adapter is live
and the reload's re-embedding is done. It prints what the status lines said. Run it under a virtual
screen, on the code to measure (a worktree of an older commit measures "before")::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/first_reload.py
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import napari
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication

from napari_sam_peft.cli.demo import dock_widgets, fit_window_to_screen, open_demo_samples
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore


def settle(seconds: float) -> None:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lite_medsam")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/first_reload"))
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    store_path = args.workdir / "cells.sampeft.zarr"
    store = AnnotationStore.create(store_path)
    for seed in (0, 1, 2):
        sample = make_sample("cells", seed)
        store.add_labels(sample.image, sample.labels, name=f"cells {seed}", split="val" if seed == 2 else "train")

    viewer = napari.Viewer(title="napari-sam-peft: first reload")
    fit_window_to_screen(viewer)
    open_demo_samples(viewer, "cells")
    dock_widgets(viewer, store=store_path, model=args.model)
    docks = {key.split(" ")[0]: widget for key, widget in viewer.window.dock_widgets.items()}
    segment = next(w for k, w in docks.items() if k.startswith("Segment"))
    finetune = next(w for k, w in docks.items() if k.startswith("Finetune"))
    wait_for(lambda: segment.embeddings is not None and not segment.active_workers, 300, "the first embeddings")
    settle(1.0)
    print(f"Recommendation: {finetune.recommendation.value}", flush=True)
    print(f"Estimate: {finetune.estimate.value}", flush=True)
    model = finetune.session.model
    start = time.monotonic()
    QTest.mouseClick(finetune.start_button.native, Qt.MouseButton.LeftButton)
    wait_for(lambda: model.adapter_path is not None, args.timeout, "the first hot reload")
    wait_for(lambda: model.reload_pending is None and not segment.active_workers, 300, "its re-embedding")
    seconds = time.monotonic() - start
    print(f"first hot reload {seconds:.1f} s after Start; status: {finetune.status.value}", flush=True)
    print(f"Segment dock: {segment.model_status.value}", flush=True)
    QTest.mouseClick(finetune.stop_button.native, Qt.MouseButton.LeftButton)
    run = finetune.run
    wait_for(lambda: run.process is None or run.process.terminal_event is not None, 600, "the run to stop")
    viewer.close()
    settle(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
