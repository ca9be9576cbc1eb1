"""One measurement in a child process of its own, for the benchmark scripts.

A fresh interpreter per measurement keeps one side's memory, threads and caches out of the next
side's figures. The child prints its result as the last line of its output, in JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def measured_in_child(command: list[str], what: str) -> dict:
    """Run ``command`` and return the JSON object its last output line holds.

    A failed child shows its error output and ends the script with one line naming ``what`` failed.
    """
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{what} failed (exit status {done.returncode}).")
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_rows(rows: list[dict], path: str | Path | None) -> None:
    """Keep the measured rows as JSON in ``path`` (nothing when it is ``None``)."""
    if path is not None:
        Path(path).write_text(json.dumps(rows, indent=1))
