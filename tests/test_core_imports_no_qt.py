"""``napari_sam_peft.core`` must be usable on machines without a display: no Qt, no napari."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # imports core in a new process

FORBIDDEN = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy")


def test_importing_core_every_submodule_and_the_session_loads_no_qt_or_napari():
    code = f"""
import importlib, pkgutil, sys
import napari_sam_peft.core as core
for module in pkgutil.walk_packages(core.__path__, core.__name__ + "."):
    importlib.import_module(module.name)
import napari_sam_peft.session  # the widgets' shared state is Qt-free too
loaded = sorted({{name.split(".")[0] for name in sys.modules}} & set({FORBIDDEN!r}))
print(",".join(loaded))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"core imported: {result.stdout.strip()}"
