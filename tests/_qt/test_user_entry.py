"""napari started the way a user starts it, and the plugin opened through its manifest.

Each case runs in a fresh Python process that imports napari and shows a viewer before
anything of the plugin, torch or micro_sam is imported: that is the order in which a user
meets the plugin (``napari``, then a menu), and the order in which napari died with a
segmentation fault when triton's LLVM met Mesa's (see ``napari_sam_peft._triton_guard``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # each case starts napari in a new process

PREAMBLE = """
import sys
import napari
from qtpy.QtWidgets import QApplication

viewer = napari.Viewer(show=True)
QApplication.processEvents()
ours = sorted(m for m in sys.modules if m.split(".")[0] in
              ("napari_sam_peft", "torch", "torchvision", "micro_sam", "triton", "segment_anything"))
assert not ours, f"imported before the viewer: {ours}"

def wait_until(condition):  # the test's subprocess timeout bounds the wait
    import time
    while not condition():
        QApplication.processEvents()
        time.sleep(0.02)

def dock(name):
    dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-sam-peft", name)
    QApplication.processEvents()
    return widget
"""

CASES = {
    # File > Open Sample first, then the three widgets from the Plugins menu, then the model.
    "sample data, then every widget": """
viewer.open_sample("napari-sam-peft", "cells")
segment = dock("Segment")
dock("Dataset")
finetune = dock("Finetune")
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
QTest.mouseClick(segment.load_button.native, Qt.MouseButton.LeftButton)
wait_until(lambda: segment.embeddings is not None)
shown = [layer.name for layer in viewer.layers if layer.visible and layer.name.startswith("cells")]
assert shown == [segment.image_choice.value], shown  # the image being segmented is on the canvas
assert segment.session.model.loaded.identity.name == "lite_medsam"  # real weights are the default
assert "parameters train" in finetune.estimate.value, finetune.estimate.value
""",
    "Segment first": """
segment = dock("Segment")
viewer.open_sample("napari-sam-peft", "nuclei")
assert "nuclei (domain A)" in segment.image_choice.choices
""",
    "Finetune first": """
finetune = dock("Finetune")
assert finetune.preset.value
""",
    "Dataset first": """
dock("Dataset")
""",
    "the reader": """
viewer.open(sys.argv[1], plugin="napari-sam-peft")
assert [layer.name for layer in viewer.layers] == ["cells", "cells labels"]
""",
    "the writer": """
import numpy as np
image = viewer.add_image(np.random.default_rng(0).random((64, 64)), name="image")
labels = viewer.add_labels(np.pad(np.ones((8, 8), dtype=np.uint8), 28), name="labels")
viewer.layers.selection = {image, labels}
written = viewer.layers.save(sys.argv[1] + "-new.sampeft.zarr", selected=True, plugin="napari-sam-peft")
assert written and written[0].endswith(".sampeft.zarr"), written
""",
}


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.data.store import AnnotationStore

    path = tmp_path_factory.mktemp("entry") / "cells.sampeft.zarr"
    cells = make_sample("cells", seed=0, shape=(64, 64))
    AnnotationStore.create(path).add_labels(cells.image, cells.labels, name="cells")
    return path


@pytest.mark.gui
@pytest.mark.parametrize("case", list(CASES))
def test_napari_first_then_the_plugin_through_its_manifest(case, store_path, tmp_path):
    script = textwrap.dedent(PREAMBLE) + textwrap.dedent(CASES[case]) + "\nviewer.close()\nprint('entry ok')\n"
    env = dict(os.environ, HOME=str(tmp_path), NAPARI_SAM_PEFT_CACHE=str(tmp_path / "cache"), QT_API="pyqt6")
    result = subprocess.run(
        [sys.executable, "-c", script, str(store_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0 and "entry ok" in result.stdout, (
        f"napari exited with {result.returncode} (-11 is a segmentation fault)\n{result.stderr[-3000:]}"
    )
