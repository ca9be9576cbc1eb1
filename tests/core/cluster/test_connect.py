"""Reaching a scheduler and choosing a worker from what the workers said about themselves."""

from __future__ import annotations

import socket

import pytest

from napari_sam_peft.core.cluster.connect import ClusterInfo, GpuInfo, WorkerInfo, connect
from napari_sam_peft.core.cluster.target import ClusterTarget
from napari_sam_peft.core.errors import ClusterError

GIB = 1024**3
CPU = WorkerInfo("tcp://10.0.0.1:1", "cpu01", threads=32, memory=256 * GIB)
SMALL = WorkerInfo("tcp://10.0.0.2:1", "gpu01", 8, 64 * GIB, (GpuInfo("NVIDIA T4", 16 * GIB, 15 * GIB),))
BIG = WorkerInfo("tcp://10.0.0.3:1", "gpu02", 8, 64 * GIB, (GpuInfo("NVIDIA A100", 80 * GIB, 79 * GIB),))


def test_a_run_goes_to_the_gpu_with_the_most_free_memory_and_gpu_asks_for_one():
    cluster = ClusterInfo("tcp://s:8786", (CPU, SMALL, BIG))
    assert cluster.choose(gpu=True) is BIG and cluster.choose(gpu=False) is BIG
    assert cluster.device == "cuda" and cluster.free_gpu_memory == 79 * GIB
    cpu_only = ClusterInfo("tcp://s:8786", (CPU,))
    assert cpu_only.choose(gpu=False) is CPU and cpu_only.device == "cpu" and cpu_only.free_gpu_memory is None
    with pytest.raises(ClusterError, match="No worker of the cluster at tcp://s:8786 has a GPU"):
        cpu_only.choose(gpu=True)
    with pytest.raises(ClusterError, match="has no workers: start one"):
        ClusterInfo("tcp://s:8786", ()).choose(gpu=False)


def test_the_cluster_is_described_by_what_each_worker_has():
    line = ClusterInfo("tcp://s:8786", (CPU, BIG)).describe()
    assert line.startswith("Connected to tcp://s:8786: 2 workers: cpu01: no GPU, 32 threads, 256 GiB memory;")
    assert "gpu02: NVIDIA A100 (80 GiB, 79 GiB free), 8 threads" in line
    assert "no workers yet" in ClusterInfo("tcp://s:8786", ()).describe()


def test_an_address_where_nothing_listens_says_so_within_the_time_limit():
    with socket.socket() as probe:  # a port on this machine that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = f"Could not reach a Dask scheduler at tcp://127.0.0.1:{port} within 2 s"
    with pytest.raises(ClusterError, match=message):
        connect(ClusterTarget(f"127.0.0.1:{port}"), timeout=2)
