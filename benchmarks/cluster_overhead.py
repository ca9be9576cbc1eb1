"""What training on a Dask cluster costs over training here: the same run, local and on a worker.

A scheduler and one worker run on this machine (127.0.0.1, as tests/dask_cluster.py starts them), so the
figures are the overhead of the cluster path itself (connecting, asking the workers, hashing and
sending the store, the task, events over a Dask topic, each best adapter fetched, checked and written
here), not a network's. For each model: a local run (``napari-sam-peft train``, the Finetune widget's
worker process) and the same run with ``--cluster``, then a second cluster run after one more image
was annotated. Both train with the same threads; the worker with one Dask thread.

    python benchmarks/cluster_overhead.py [--models demo,lite_medsam] [--steps 10]

Columns: time from the command's start to its ``started`` event and to its first ``progress`` event;
the median seconds between two steps; the whole run; files and bytes sent (first and second run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.dask_cluster

from tests.dask_cluster import LocalDaskCluster  # noqa: E402

from napari_sam_peft.core.data.sample_data import make_sample  # noqa: E402
from napari_sam_peft.core.data.store import AnnotationStore  # noqa: E402

THREADS = 2


def make_store(folder: Path, seeds: tuple[int, ...]) -> Path:
    path = folder / "cells.sampeft.zarr"
    store = AnnotationStore(path) if path.exists() else AnnotationStore.create(path)
    for seed in seeds:
        sample = make_sample("cells", seed=seed)
        store.add_labels(sample.image, sample.labels, split="val" if seed == 0 else "train")
    return path


def timed_run(args: list[str]) -> dict:
    """Run ``train ... --events``; when each event arrived, from the command's start."""
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    command = [sys.executable, "-m", "napari_sam_peft.cli", "train", *args, "--events"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    arrivals: list[tuple[float, dict]] = []
    for line in process.stdout:
        if line.startswith("{"):
            arrivals.append((time.perf_counter() - start, json.loads(line)))
    stderr = process.stderr.read()
    if process.wait() != 0:
        raise RuntimeError(stderr)
    total = time.perf_counter() - start
    started = next(t for t, e in arrivals if e["event"] == "started")
    steps = [t for t, e in arrivals if e["event"] == "progress"]
    sent = stderr.split("sent ")[1].split(")")[0] + ")" if "sent " in stderr else ""
    return {
        "started": started,
        "first_step": steps[0],
        "step": statistics.median(b - a for a, b in zip(steps, steps[1:], strict=False)),
        "total": total,
        "sent": sent,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,lite_medsam")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cluster = LocalDaskCluster(folder / "dask", threads=THREADS).start()
        try:
            for model in args.models.split(","):
                work = folder / model
                store = make_store(work, (0, 1, 2))
                job = [str(store), "--model", model, "--preset", "late_lora", "--steps", str(args.steps),
                       "--validate-every", str(max(args.steps // 2, 1)), "--objects-per-image", "4",
                       "--sub-iterations", "4", "--device", "cpu"]  # fmt: skip
                local = timed_run([*job, "--out", str(work / "local" / "adapter.safetensors")])
                remote = [*job, "--cluster", cluster.address, "--out"]
                first = timed_run([*remote, str(work / "c1" / "adapter.safetensors")])
                make_store(work, (3,))  # one more annotated image
                second = timed_run([*remote, str(work / "c2" / "adapter.safetensors")])
                rows.append((model, local, first, second))
                print(f"{model}: local {local}, cluster {first}, second {second}", file=sys.stderr, flush=True)
        finally:
            cluster.stop()
    print(f"\n{args.steps} steps of late_lora, 4 objects and 4 correction passes a step, {THREADS} threads each\n")
    print("| model | run | to `started` | to first step | s / step (median) | whole run | sent |")
    print("|---|---|---|---|---|---|---|")
    for model, local, first, second in rows:
        for name, run in (("here", local), ("cluster, first", first), ("cluster, second", second)):
            print(
                f"| {model} | {name} | {run['started']:.1f} s | {run['first_step']:.1f} s | {run['step']:.2f} s | "
                f"{run['total']:.1f} s | {run['sent'] or '-'} |"
            )


if __name__ == "__main__":
    main()
