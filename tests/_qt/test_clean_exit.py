"""napari closes cleanly after a training run, whichever way the run ended and napari is closed.

Each case is a fresh process that starts napari first (nothing of ours imported), opens the
three docks from the manifest, loads the demo model with the Load button, starts a run with the
Start button, lets it finish, stops it or kills it, and then closes napari with its event loop
running, as a user does: the window's close button or ``Ctrl+Q``. Python's clean-up runs after
that (temporary folders, thread workers); an error there is on stderr and can abort the process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests._qt.test_user_entry import PREAMBLE  # napari first, nothing of ours imported; wait_until, dock

SCRIPT = """
from qtpy.QtCore import Qt, QTimer
from qtpy.QtTest import QTest

def click(button):
    assert button.enabled, button.text
    QTest.mouseClick(button.native, Qt.MouseButton.LeftButton)

viewer.open_sample("napari-sam-peft", "cells")
segment, dataset, finetune = dock("Segment"), dock("Dataset"), dock("Finetune")
segment.model_choice.value = "demo"
click(segment.load_button)
wait_until(lambda: segment.embeddings is not None and not segment.active_workers)
dataset.open_store(sys.argv[1])
finetune.validate_every.value = 1
finetune.objects.value = 2
finetune.evaluate.value = False
finetune.with_decoder.value = False
ending, closing = sys.argv[2], sys.argv[3]
finetune.steps.value = "3" if ending == "finished" else "1000"
click(finetune.start_button)
process = finetune.process
print("worker", process.pid, flush=True)
if ending != "finished":
    wait_until(lambda: finetune.reloads >= 1)  # training, and its first adapter is attached
    if ending in ("stopped", "stopping"):
        click(finetune.stop_button)
    elif ending == "killed":
        process.kill()
if ending not in ("running", "stopping"):  # else napari is closed while the run trains or stops
    wait_until(lambda: process.terminal_event is not None and not finetune._timer.isActive())
    wait_until(lambda: not segment.active_workers)
    print("run", process.terminal_event.event, getattr(process.terminal_event, "status", ""), flush=True)

def confirm():  # napari asks "Close Application?" after Ctrl+Q: the user clicks Close
    for dialog in QApplication.topLevelWidgets():
        if type(dialog).__name__ == "ConfirmCloseDialog" and dialog.isVisible():
            QTest.mouseClick(dialog.close_btn, Qt.MouseButton.LeftButton)

def close():
    if closing == "ctrl+q":
        viewer.window._qt_window.activateWindow()  # the user's window is the active one
        QApplication.processEvents()
        QTest.keyClick(viewer.window._qt_window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    else:
        viewer.window._qt_window.close()  # what the window's close button asks

confirming = QTimer()
confirming.timeout.connect(confirm)
confirming.start(50)
QTimer.singleShot(0, close)
napari.run()
print("napari closed", flush=True)
"""


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.data.store import AnnotationStore

    path = tmp_path_factory.mktemp("exit") / "cells.sampeft.zarr"
    store = AnnotationStore.create(path)
    for seed, split in ((0, "train"), (5, "val")):
        cells = make_sample("cells", seed=seed, shape=(128, 128))
        store.add_labels(cells.image, cells.labels, name=f"cells {seed}", split=split)
    return path


@pytest.mark.slow
@pytest.mark.gui
@pytest.mark.parametrize(
    ("ending", "closing"),
    [
        ("finished", "window"),
        ("stopped", "ctrl+q"),
        ("killed", "window"),
        ("running", "ctrl+q"),
        ("stopping", "window"),
    ],
)
def test_napari_exits_cleanly_after_a_run(store_path, tmp_path, ending, closing):
    env = dict(os.environ, HOME=str(tmp_path), NAPARI_SAM_PEFT_CACHE=str(tmp_path / "cache"), QT_API="pyqt6")
    script = textwrap.dedent(PREAMBLE) + textwrap.dedent(SCRIPT)
    result = subprocess.run(
        [sys.executable, "-c", script, str(store_path), ending, closing],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    expected = {"finished": "run finished completed", "stopped": "run finished stopped", "killed": "run error"}
    assert expected.get(ending, "worker") in result.stdout, result.stdout + result.stderr[-3000:]
    worker = int(result.stdout.split("worker ")[1].split()[0])
    outlived = _alive(worker)
    if outlived:
        os.kill(worker, 9)
    ours = [line for line in result.stderr.splitlines() if not _from_napari_itself(line)]
    assert result.returncode == 0 and "napari closed" in result.stdout and not ours, (
        f"exit code {result.returncode} (134 is an abort)\n{result.stderr[-4000:]}"
    )
    assert not outlived, "the training process outlived napari"


def _from_napari_itself(line: str) -> bool:
    """Lines napari, Qt or Mesa print under Xvfb on every start, which we cannot avoid."""
    return not line.strip() or any(
        known in line for known in ("QStandardPaths", "libEGL", "MESA", "qt.qpa", "XDG_RUNTIME_DIR")
    )


def _alive(pid: int) -> bool:
    """Whether a process runs (an ended child that no one has reaped yet does not)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
