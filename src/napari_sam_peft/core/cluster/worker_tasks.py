"""What runs on a Dask worker: its self-description, the blob store, and the training run itself.

The client (:mod:`.remote_run`) calls these by reference, so a worker needs napari-sam-peft installed
(the same version). :func:`train_on_worker` is the one task: it puts the run's store together from
the blobs, runs :func:`~..training.run.run_job` as a local run would, reports every event on the
run's Dask topic (``Worker.log_event``; the client subscribes) and polls the run's stop flag (a
``distributed.Event``). The others run through ``Client.run``, beside the task, so adapters can be
read while the worker's one thread trains.

Files live under :func:`cluster_dir` on the worker: ``blobs/`` (by hash) and ``runs/<run id>/``.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import platform
import socket
import time
from pathlib import Path
from typing import Any

from ..cache_dir import default_cache_dir
from .blobs import BlobStore, Manifest

#: where a worker keeps blobs and runs (default: the cache folder's ``cluster``)
CLUSTER_DIR_ENV = "NAPARI_SAM_PEFT_CLUSTER_DIR"
#: the least seconds between two looks at a run's stop flag
STOP_POLL_SECONDS = 1.0


def cluster_dir() -> Path:
    """``$NAPARI_SAM_PEFT_CLUSTER_DIR``, or ``cluster`` in napari-sam-peft's cache folder."""
    env = os.environ.get(CLUSTER_DIR_ENV)
    return Path(env).expanduser() if env else default_cache_dir() / "cluster"


def event_topic(run_id: str) -> str:
    """The Dask topic a run's events are logged under."""
    return f"napari-sam-peft-run-{run_id}"


def stop_flag_name(run_id: str) -> str:
    """The name of the ``distributed.Event`` that asks a run to stop."""
    return f"napari-sam-peft-stop-{run_id}"


def run_folder(run_id: str) -> Path:
    """A run's folder on the worker."""
    if not run_id.replace("-", "").isalnum():
        raise ValueError(f"{run_id!r} is not a run id")
    return cluster_dir() / "runs" / run_id


def probe_worker(dask_worker: Any = None) -> dict[str, Any]:
    """What this worker has: host, threads, memory, GPUs (total and free memory), resources, versions."""
    import psutil
    import torch

    from ... import __version__

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            gpus.append({"name": torch.cuda.get_device_name(index), "memory": int(total), "free": int(free)})
    threads = dask_worker.state.nthreads if dask_worker is not None else os.cpu_count() or 1
    limit = getattr(getattr(dask_worker, "memory_manager", None), "memory_limit", None)
    return {
        "host": socket.gethostname(),
        "threads": int(threads),
        "memory": int(limit or psutil.virtual_memory().total),
        "gpus": gpus,
        "resources": dict(dask_worker.state.total_resources) if dask_worker is not None else {},
        "versions": {
            "napari_sam_peft": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }


def missing_blobs(hashes: list[str]) -> list[str]:
    """The hashes this worker does not keep yet."""
    return BlobStore(cluster_dir() / "blobs").missing(hashes)


def put_blobs(blobs: dict[str, bytes]) -> int:
    """Keep blobs sent by the client (each checked against its hash); returns the bytes written."""
    return BlobStore(cluster_dir() / "blobs").put(blobs)


def read_run_files(run_id: str, adapter: bool = True) -> dict[str, Any]:
    """A run's record (``run.json`` text), its folder here and, with ``adapter``, its best adapter's bytes and
    sha256."""
    folder = run_folder(run_id)
    record = folder / "run.json"
    answer: dict[str, Any] = {"record": record.read_text() if record.is_file() else None, "folder": str(folder)}
    path = folder / "adapter.safetensors"
    if adapter and path.is_file():
        data = path.read_bytes()  # written by rename, so always whole
        answer.update(adapter=data, sha256=hashlib.sha256(data).hexdigest())
    return answer


def train_on_worker(
    job_values: dict[str, Any], manifest: Manifest, run_id: str, job_files: dict[str, list[str]]
) -> str:
    """Run a training job on this worker; its events go to the run's topic. Returns the run's status.

    ``job_values`` are a :class:`~..training.job.TrainingJob`'s (the client's paths replaced here);
    ``manifest`` is the store's files; ``job_files`` the other files the client sent, as {job field:
    [file name, sha256]}: a checkpoint (``model``; without it, a model this worker loads by name) and the
    adapter a continuation starts from (``from_adapter``).
    """
    from distributed import Event as DaskEvent
    from distributed import get_worker

    from ..training.events import Event, error_event
    from ..training.job import TrainingJob
    from ..training.run import run_job

    worker = get_worker()
    blobs = BlobStore(cluster_dir() / "blobs")
    folder = run_folder(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    numbers = itertools.count()

    def emit(event: Event) -> None:
        worker.log_event(event_topic(run_id), {"seq": next(numbers), "line": event.to_json()})

    values = dict(job_values)
    values.update(out=folder / "adapter.safetensors", cache_dir=None)
    flag = DaskEvent(stop_flag_name(run_id))
    last_look = [0.0, False]

    def should_stop() -> bool:
        if not last_look[1] and time.monotonic() - last_look[0] >= STOP_POLL_SECONDS:
            last_look[:] = [time.monotonic(), bool(flag.is_set())]
        return bool(last_look[1])

    try:
        values["store"] = blobs.materialize(manifest, folder / "store.sampeft.zarr")
        for job_field, (name, digest) in job_files.items():
            name = Path(name).name
            values[job_field] = str(blobs.materialize({name: [digest, 0]}, folder / job_field) / name)
        record = run_job(TrainingJob(**values).on_this_machine(), emit, should_stop)  # this worker trains it
    except BaseException as error:  # noqa: BLE001 - every failure is one event, as a local run reports it
        emit(error_event(error, device=str(values.get("device", "")), adapter=folder / "adapter.safetensors"))
        return "failed"
    return record.status
