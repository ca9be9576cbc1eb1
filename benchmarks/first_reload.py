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

from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from first_hour_walk import settle, start_window, wait_for  # noqa: E402  (the walk's waits, on events of the Qt loop)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lite_medsam")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/first_reload"))
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--shots", type=Path, default=None, help="folder for screenshots before Start and at the reload"
    )
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    store_path = args.workdir / "cells.sampeft.zarr"
    store = AnnotationStore.create(store_path)
    for seed in (0, 1, 2):
        sample = make_sample("cells", seed)
        store.add_labels(sample.image, sample.labels, name=f"cells {seed}", split="val" if seed == 2 else "train")

    viewer, segment, finetune = start_window(store_path, args.model)  # the demo's window, embeddings ready
    settle(1.0)

    def shot(name: str) -> None:
        if args.shots is not None:
            from qtpy.QtWidgets import QApplication

            args.shots.mkdir(parents=True, exist_ok=True)
            size = QApplication.primaryScreen().size()
            path = args.shots / f"first_reload_{size.width()}x{size.height()}_{name}.png"
            QApplication.primaryScreen().grabWindow(0).save(str(path))
            print(f"wrote {path}", flush=True)

    from qtpy.QtWidgets import QDockWidget

    for dock in viewer.window._qt_window.findChildren(QDockWidget):
        if dock.windowTitle() == "Finetune":
            dock.raise_()  # the Finetune tab in front, as a user clicks it
    settle(0.5)
    shot("1_before_start")
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
    shot("2_first_reload")
    QTest.mouseClick(finetune.stop_button.native, Qt.MouseButton.LeftButton)
    run = finetune.run
    wait_for(lambda: run.process is None or run.process.terminal_event is not None, 600, "the run to stop")
    viewer.close()
    settle(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
