"""``napari-sam-peft --help`` and every subcommand's ``--help`` answer without importing torch (it took
14-16 s on a shared machine to import what only the work needs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a new process, so that nothing is imported yet

COMMANDS = [[], ["methods"], ["store", "add"], ["store", "info"], ["train"], ["evaluate"], ["export"], ["demo"],
            ["cluster", "info"], ["cluster", "slurm"], ["cluster", "attach"]]  # fmt: skip

PROBE = """
import sys
from napari_sam_peft.cli import main
for command in {commands!r}:
    try:
        main([*command, "--help"])
    except SystemExit as done:
        assert done.code == 0, (command, done.code)
heavy = sorted(name for name in ("torch", "segment_anything", "micro_sam", "napari") if name in sys.modules)
print("imported:", heavy)
"""


def test_help_of_every_command_imports_no_torch():
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(commands=COMMANDS)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "usage: napari-sam-peft train" in done.stdout and "--preset" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "imported: []"
