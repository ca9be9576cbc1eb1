"""Training on several processes under torchrun; one process without it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from napari_sam_peft.core.peft import Adapter
from napari_sam_peft.core.training.distributed import any_rank, distributed_rank, setup_distributed

pytestmark = pytest.mark.slow  # torchrun starts processes


def test_train_runs_under_torchrun_with_two_processes(store, tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    out = tmp_path / "ddp.safetensors"
    result = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "napari_sam_peft.cli",
            "train",
            str(store.path),
            "--model",
            "demo",
            "--preset",
            "late_lora",
            "--blocks",
            "last 1",
            "--steps",
            "2",
            "--validate-every",
            "1",
            "--objects-per-image",
            "2",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--events",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    started = [e for e in events if e["event"] == "started"]
    assert len(started) == 1 and started[0]["world_size"] == 2  # only rank 0 reports
    assert events[-1]["event"] == "finished"
    Adapter.load(out)


def test_without_torchrun_training_is_one_process_on_the_asked_device(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert setup_distributed("cpu") == (0, 1, "cpu")
    assert distributed_rank() == (0, 1)


@pytest.mark.parametrize("flag", [True, False])
def test_one_process_stops_when_it_wants_to(flag):
    assert any_rank(flag, world=1) is flag
