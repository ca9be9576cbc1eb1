"""Keep ``triton``'s LLVM and Mesa's LLVM out of each other's way in napari's process.

``torchvision`` (and so micro_sam and this plugin) imports ``triton``, which bundles its own
LLVM. Mesa's OpenGL drivers (software rendering, AMD and Intel graphics on Linux, virtual
machines, remote desktops, Xvfb) load the system's ``libLLVM``. Once napari's canvas has
loaded Mesa, importing triton kills the process with a segmentation fault; importing it
before does no harm. A plugin cannot choose when napari creates its canvas, so the package
calls :func:`guard_triton_import` the first time it is imported:

- triton already imported (or already blocked): nothing to do;
- Mesa's ``libLLVM`` already loaded in this process: block triton here (``import triton``
  raises ``ModuleNotFoundError``, as on a machine without it; torch then runs eagerly,
  which is all napari's process needs: training runs in its own process, which is
  started fresh and keeps triton);
- otherwise: import triton now, before any canvas can load Mesa, if it is installed.

NVIDIA's OpenGL driver does not load ``libLLVM``, so CUDA workstations keep triton in
napari's process too.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

MAPS = Path("/proc/self/maps")


def llvm_is_loaded(maps: Path = MAPS) -> bool:
    """Whether a shared ``libLLVM`` (Mesa's) is mapped into this process (Linux; False elsewhere)."""
    try:
        return "libLLVM" in maps.read_text()
    except OSError:
        return False


def guard_triton_import(maps: Path = MAPS) -> str:
    """Make a later ``import triton`` safe in this process; returns what was done.

    One of ``"already imported"``, ``"blocked"``, ``"imported early"`` or ``"not installed"``.
    """
    if "triton" in sys.modules:
        return "already imported"
    if llvm_is_loaded(maps):
        sys.modules["triton"] = None  # type: ignore[assignment]  # the import system's "not available" marker
        return "blocked"
    try:
        importlib.import_module("triton")
    except Exception:  # noqa: BLE001 - a broken or missing triton is the same as none for us
        sys.modules.pop("triton", None)
        return "not installed"
    return "imported early"
