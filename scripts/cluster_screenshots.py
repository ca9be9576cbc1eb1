"""Train on a Dask cluster from the Finetune widget as a user would, and take a screenshot during the run.

Run under a virtual screen of the size to show, for example::

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python scripts/cluster_screenshots.py --out docs/images

Starts a ``dask scheduler`` and a ``dask worker`` on 127.0.0.1 (as the tests do), opens napari on the
cells sample with Segment, Dataset and Finetune docked as the demo does (the demo model), puts three
annotated images in the store, then in the Finetune widget chooses "Dask cluster", types the address,
clicks Connect and Start, waits for the run's second hot reload and writes ``cluster_run_<W>x<H>.png``
(the whole window, the Finetune dock scrolled to its top) and ``cluster_status_<W>x<H>.png`` (scrolled
down to Stop, the run's status line and its curves). Prints what the widget said.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.dask_cluster

from tests.dask_cluster import LocalDaskCluster  # noqa: E402

from napari_sam_peft._qt.dock_layout import _dock_of  # noqa: E402
from napari_sam_peft._qt.finetune_cluster import DASK_CLUSTER  # noqa: E402
from napari_sam_peft.cli.demo import dock_widgets, fit_window_to_screen  # noqa: E402
from napari_sam_peft.core.data.sample_data import make_sample  # noqa: E402


def settle(until=lambda: True, seconds: float = 300.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        if until():
            break
        time.sleep(0.02)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    cluster = LocalDaskCluster(folder / "dask", threads=1).start()
    try:
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
        finetune.settings.update_estimate()
        _dock_of(finetune.native).raise_()  # the Finetune tab in front
        panel = finetune.settings.cluster
        panel.where.value = DASK_CLUSTER
        panel.address.native.setFocus()
        QTest.keyClicks(panel.address.native, cluster.address)
        QTest.mouseClick(panel.connect_button.native, Qt.MouseButton.LeftButton)
        settle(lambda: "Connected" in panel.status.value or "Not connected" in panel.status.value, 60)
        print("cluster:", panel.status.native.toolTip())
        print("recommendation:", finetune.recommendation.value)
        finetune.steps.value = "60"
        finetune.validate_every.value = 5
        finetune.objects.value = 4
        QTest.mouseClick(finetune.start_button.native, Qt.MouseButton.LeftButton)
        settle(lambda: finetune.reloads >= 2)
        print("status:", finetune.status.value)
        print("reloads:", finetune.reloads)
        size = QApplication.primaryScreen().size()
        tag = f"{size.width()}x{size.height()}"
        for scroll in finetune.native.findChildren(QScrollArea):
            scroll.verticalScrollBar().setValue(0)
        settle(seconds=0.5)
        args.out.mkdir(parents=True, exist_ok=True)
        viewer.window._qt_window.grab().save(str(args.out / f"cluster_run_{tag}.png"))
        for scroll in finetune.native.findChildren(QScrollArea):  # down to Stop, the status and the curves
            bar = scroll.verticalScrollBar()
            bar.setValue(finetune.stop_button.native.mapTo(scroll.widget(), finetune.stop_button.native.pos()).y())
        settle(seconds=0.5)
        viewer.window._qt_window.grab().save(str(args.out / f"cluster_status_{tag}.png"))
        print("wrote", args.out / f"cluster_run_{tag}.png", "and", args.out / f"cluster_status_{tag}.png")
        finetune.stop()
        settle(lambda: finetune.process.terminal_event is not None, 120)
        print("ended:", finetune.status.value)
        viewer.close()
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
