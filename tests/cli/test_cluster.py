"""``napari-sam-peft train --cluster`` on a real Dask scheduler and worker (subprocesses on 127.0.0.1).

The run matches a local one with the same seed; a second run sends only what changed; each fault (the
worker killed, the scheduler stopped, nothing listening, no GPU) is one message and exit status 2, with
the adapter that arrived last still on disk; a stopped run keeps its adapter; a run whose client died
is followed again with ``cluster attach``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.training.runs import RECORD_NAME, read_run
from tests.dask_cluster import LocalDaskCluster, TlsFiles

pytestmark = [pytest.mark.slow, pytest.mark.cluster]  # each test starts Dask processes and trains

#: small and quick: the demo model, 2 objects and 1 correction pass per step
ARGS = ("--model", "demo", "--preset", "late_lora", "--blocks", "last 1", "--objects-per-image", "2",
        "--sub-iterations", "1", "--device", "cpu", "--seed", "0")  # fmt: skip
#: a hang guard for one command (not a speed bound)
TIMEOUT = 600


def _store(folder: Path, seeds=(1, 2), val=(3,)) -> Path:
    path = folder / "cells.sampeft.zarr"
    store = AnnotationStore.create(path) if not path.exists() else AnnotationStore(path)
    for seed in seeds:
        sample = make_sample("cells", seed=seed, shape=(96, 96))
        store.add_labels(sample.image, sample.labels, split="train")
    for seed in val:
        sample = make_sample("cells", seed=seed, shape=(96, 96))
        store.add_labels(sample.image, sample.labels, split="val")
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}  # as the test worker trains


def _train(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "napari_sam_peft.cli", "train", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=_env())


def _start(*args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "napari_sam_peft.cli", "train", *args, "--events"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _events_until(process: subprocess.Popen, kind: str) -> list[dict]:
    """Read the run's events until one of ``kind`` (or the end)."""
    events = []
    for line in process.stdout:
        if line.startswith("{"):
            events.append(json.loads(line))
            if events[-1]["event"] == kind:
                break
    return events


def _finish(process: subprocess.Popen) -> tuple[int, list[dict], str]:
    out, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    local = LocalDaskCluster(tmp_path_factory.mktemp("dask")).start()
    yield local
    local.stop()


@pytest.fixture
def own_cluster(tmp_path):
    """A cluster for one test, which may kill its worker or scheduler."""
    local = LocalDaskCluster(tmp_path / "dask").start()
    yield local
    local.stop()


def test_a_cluster_run_matches_a_local_run_and_a_second_one_sends_only_what_changed(cluster, tmp_path):
    store = _store(tmp_path)
    steps = ("--steps", "4", "--validate-every", "2")
    local = _train(str(store), *ARGS, *steps, "--out", str(tmp_path / "local" / "adapter.safetensors"))
    assert local.returncode == 0, local.stderr
    remote_out = tmp_path / "remote" / "adapter.safetensors"
    remote = _train(str(store), *ARGS, *steps, "--cluster", cluster.address, "--out", str(remote_out))
    assert remote.returncode == 0, remote.stderr + cluster.log("worker.log")
    assert "Connected to " + cluster.address + ": 1 worker:" in remote.stderr
    files = int(remote.stderr.split("sent ")[1].split(" of ")[1].split()[0])
    assert f"sent {files} of {files} files" in remote.stderr  # the first run sends the whole store

    # the same training on the worker: the same tensors and the same validation score, same seed
    ours, theirs = load_file(tmp_path / "local" / "adapter.safetensors"), load_file(remote_out)
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    local_record = json.loads((tmp_path / "local" / "run.json").read_text())
    record = json.loads((remote_out.parent / "run.json").read_text())
    assert record["best_score"] == local_record["best_score"] and record["status"] == "completed"
    assert record["adapter"] == str(remote_out) and record["ran_on"].startswith(f"Dask cluster {cluster.address}")
    assert local_record["ran_on"] == "" and record["remote"]["worker"].startswith("tcp://127.0.0.1:")
    # where its files are on the worker, as the worker names the folder
    assert record["remote"]["folder"] == str(cluster.folder / "worker" / "runs" / record["remote"]["run_id"])

    _store(tmp_path, seeds=(4,), val=())  # one more annotated image
    second = str(tmp_path / "second" / "adapter.safetensors")
    again = _train(str(store), *ARGS, "--steps", "1", "--cluster", cluster.address, "--out", second)
    assert again.returncode == 0, again.stderr
    sent, total = (int(n) for n in again.stderr.split("sent ")[1].split(" files")[0].split(" of "))
    assert 0 < sent < total - files // 2, again.stderr  # only the new image's files and commits


def test_a_cluster_without_a_gpu_and_an_address_where_nothing_listens_exit_2_with_one_line(cluster, tmp_path):
    store = _store(tmp_path, seeds=(1,), val=())
    out = tmp_path / "run" / "adapter.safetensors"
    args = ("--steps", "2", "--cluster", cluster.address, "--cluster-gpu", "--out", str(out))
    result = _train(str(store), *ARGS, *args)
    assert result.returncode == 2 and "has a GPU" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _train(str(store), *ARGS, "--cluster", f"tcp://127.0.0.1:{port}", "--out", str(out))
    message = f"Could not reach a Dask scheduler at tcp://127.0.0.1:{port} within 10 s"
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("fault", ["worker killed", "scheduler stopped"])
def test_a_fault_mid_run_is_one_message_exit_2_and_the_last_adapter_stays(own_cluster, tmp_path, fault):
    store = _store(tmp_path, seeds=(1, 2), val=(3,))
    out = tmp_path / "run" / "adapter.safetensors"
    long_run = ("--steps", "400", "--validate-every", "1", "--out", str(out))
    process = _start(str(store), *ARGS, *long_run, "--cluster", own_cluster.address)
    seen = _events_until(process, "best")
    assert seen[-1]["event"] == "best", seen
    arrived = out.read_bytes()
    own_cluster.kill_worker() if fault == "worker killed" else own_cluster.stop_scheduler()
    code, events, stderr = _finish(process)
    assert code == 2, stderr
    (error,) = [e for e in events if e["event"] == "error"]
    expected = "left the cluster mid-run" if fault == "worker killed" else "stopped answering"
    assert error["kind"] == "cluster" and expected in error["message"], error
    assert f"The last adapter that arrived stays on disk (and live in napari): {out}" in error["message"]
    assert out.exists() and len(out.read_bytes()) == len(arrived)  # a whole adapter, never half a file
    record = read_run(out.parent / RECORD_NAME)  # the Runs table reads it: not "running" for ever
    assert record.status == "failed" and expected in record.error and record.finished


def test_stop_keeps_the_best_adapter_and_a_run_whose_client_died_is_followed_again(cluster, tmp_path):
    store = _store(tmp_path, seeds=(1, 2), val=(3,))
    out = tmp_path / "run" / "adapter.safetensors"
    stop = tmp_path / "stop"
    process = _start(str(store), *ARGS, "--steps", "400", "--validate-every", "1", "--cluster", cluster.address,
                     "--out", str(out), "--stop-file", str(stop))  # fmt: skip
    assert _events_until(process, "best")[-1]["event"] == "best"
    stop.touch()
    code, events, stderr = _finish(process)
    assert code == 0, stderr
    assert events[-1]["event"] == "finished" and events[-1]["status"] == "stopped"
    assert events[-1]["path"] == str(out) and out.exists()
    assert json.loads((out.parent / "run.json").read_text())["status"] == "stopped"

    # the napari side dies mid-run; the run goes on on the cluster and cluster attach follows it to its end
    out2 = tmp_path / "run2" / "adapter.safetensors"
    process = _start(str(store), *ARGS, "--steps", "6", "--validate-every", "2", "--cluster", cluster.address,
                     "--out", str(out2))  # fmt: skip
    assert _events_until(process, "started")[-1]["event"] == "started"
    process.send_signal(signal.SIGKILL)
    process.wait()
    command = [sys.executable, "-m", "napari_sam_peft.cli", "cluster", "attach", str(out2.parent), "--events"]
    attached = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    code, events, stderr = _finish(attached)
    assert code == 0, stderr
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and "best" in kinds and kinds[-1] == "finished", kinds  # replayed, then followed
    assert events[-1]["path"] == str(out2) and out2.exists()
    assert json.loads((out2.parent / "run.json").read_text())["status"] == "completed"


def test_a_tls_cluster_trains_with_certificates_and_without_them_says_which_are_missing(tmp_path):
    tls = TlsFiles.create(tmp_path / "certs")
    secured = LocalDaskCluster(tmp_path / "dask", tls=tls).start()
    try:
        assert secured.address.startswith("tls://127.0.0.1:")
        store = _store(tmp_path, seeds=(1,), val=())
        out = tmp_path / "run" / "adapter.safetensors"
        args = (str(store), *ARGS, "--steps", "2", "--validate-every", "2", "--cluster", secured.address)
        result = _train(*args, "--out", str(out))
        assert result.returncode == 2 and "needs the CA file, certificate, key" in result.stderr, result.stderr
        result = _train(*args, *tls.flags(), "--out", str(out))
        assert result.returncode == 0, result.stderr + secured.log("worker.log")
        assert out.exists() and "warning" not in result.stderr  # tls://: no plain-tcp warning
    finally:
        secured.stop()


def test_cluster_info_says_what_each_worker_has(cluster):
    command = [sys.executable, "-m", "napari_sam_peft.cli", "cluster", "info", cluster.address]
    result = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    (worker,) = json.loads(result.stdout)["workers"]
    assert worker["threads"] == 1 and worker["gpus"] == [] and worker["versions"]["napari_sam_peft"]
    text = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT).stdout
    assert text.startswith(f"Connected to {cluster.address}: 1 worker:") and "no GPU, 1 threads" in text


def test_the_slurm_job_script_asks_for_the_gpus_and_its_worker_declares_them():
    args = ("--gpus", "2", "--walltime", "01:30:00", "--queue", "gpu", "--account", "lab", "--dry-run")
    command = [sys.executable, "-m", "napari_sam_peft.cli", "cluster", "slurm", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    script = result.stdout
    for line in ("#SBATCH --gres=gpu:2", "#SBATCH -t 01:30:00", "#SBATCH -p gpu", "#SBATCH -A lab"):
        assert line in script, script
    assert f"{sys.executable} -m distributed.cli.dask_worker tcp://127.0.0.1:" in script  # this Python's env
    assert "--resources GPU=2" in script  # what train --cluster-gpu asks for
