"""The triton guard: blocked where Mesa's LLVM is loaded, imported early where it is not.

Each case runs in a fresh process that loads the guard's module by itself (importing the
package would already run the guard on the real process).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import napari_sam_peft

pytestmark = pytest.mark.slow  # each case starts a new process

GUARD = Path(napari_sam_peft.__file__).with_name("_triton_guard.py")

SCRIPT = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("guard", sys.argv[1])
guard = importlib.util.module_from_spec(spec)
spec.loader.exec_module(guard)
print(guard.guard_triton_import(Path(sys.argv[2])))
try:
    import triton  # noqa: F401
    print("triton importable")
except ModuleNotFoundError:
    print("triton blocked")
import torchvision.ops  # torchvision works either way
print("torchvision ok")
"""


def _run(tmp_path, maps_text: str) -> list[str]:
    maps = tmp_path / "maps"
    maps.write_text(maps_text)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(GUARD), str(maps)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.splitlines()


def test_triton_is_blocked_once_mesa_llvm_is_loaded(tmp_path):
    lines = _run(tmp_path, "7f00-7f01 r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libLLVM-15.so.1\n")
    assert lines == ["blocked", "triton blocked", "torchvision ok"]


def test_triton_is_imported_early_where_no_llvm_is_loaded(tmp_path):
    pytest.importorskip("triton")
    lines = _run(tmp_path, "7f00-7f01 r-xp 0 08:01 1 /usr/lib/libc.so.6\n")
    assert lines == ["imported early", "triton importable", "torchvision ok"]
