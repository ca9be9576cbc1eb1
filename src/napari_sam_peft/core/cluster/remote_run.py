"""The client side of a run on a Dask cluster: ``napari-sam-peft train --cluster ADDRESS``.

:func:`run_on_cluster` connects (:mod:`.connect`), picks a worker, sends the store's files the worker
lacks (:mod:`.blobs`), submits :func:`~.worker_tasks.train_on_worker` pinned to that worker, and
follows the run's events (Dask's ``subscribe_topic``). It reports them through ``emit`` exactly as a
local run does, with this machine's paths: on each ``best`` event the adapter's bytes are fetched,
checked against the sha256 the worker computed, and written atomically to the local adapter path, so
the Finetune widget's hot reload and history work as for a local run. The run record (``run.json``)
is the worker's, with the local adapter path and where it ran.

Faults end the run with one :class:`~..errors.ClusterError` (the ``train`` command's exit status 2):
the worker leaves the cluster, the scheduler stops answering for :data:`LOST_AFTER` seconds, the task
fails. The adapter that arrived last stays on disk. :func:`attach_to_run` (``napari-sam-peft cluster
attach``) follows a run that is still going on the cluster again (its past events are replayed from the
scheduler's log).
"""

from __future__ import annotations

import itertools
import json
import queue
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..cache_dir import default_cache_dir
from ..errors import ClusterError
from ..training.events import Best, Error, Event, Finished, Started, event_from_json
from ..training.runs import RECORD_NAME, RunRecord, now, read_run
from .blobs import HashCache, Manifest, batches, folder_manifest
from .connect import WorkerInfo, connect, describe_cluster
from .target import ClusterTarget
from .worker_tasks import (
    event_topic,
    missing_blobs,
    put_blobs,
    read_run_files,
    stop_flag_name,
    train_on_worker,
)

Emit = Callable[[Event], None]
Say = Callable[[str], None]


class RemoteRunError(Exception):
    """The run failed on the worker, which reported it as ``event`` (with this machine's adapter path)."""

    def __init__(self, event: Error) -> None:
        super().__init__(event.message)
        self.event = event


#: seconds without an answer from the scheduler after which the run counts as lost
LOST_AFTER = 10.0
#: seconds between two checks that the scheduler answers and the worker is still there
HEARTBEAT_SECONDS = 2.0


@dataclass
class Transfer:
    """What a run sent to its worker: files and bytes, and how many the worker already had."""

    files: int = 0
    sent_files: int = 0
    sent_bytes: int = 0


@dataclass
class RemoteRun:
    """One run on a cluster, as the client follows it."""

    client: Any
    target: ClusterTarget
    worker: WorkerInfo
    run_id: str
    out: Path
    emit: Emit
    future: Any = None
    transfer: Transfer = field(default_factory=Transfer)
    seen: int = -1  # the last event number reported
    folder: str = ""  # the run's folder on the worker, as the worker names it

    @property
    def remote(self) -> dict[str, str]:
        """What the run record keeps to find the run again."""
        return {
            "address": self.target.describe(),
            "worker": self.worker.address,
            "host": self.worker.host,
            "run_id": self.run_id,
            "folder": self.folder,
        }

    @property
    def ran_on(self) -> str:
        """Where the run trains, in words (the run record's ``ran_on``)."""
        return f"Dask cluster {self.target.describe()}, worker {self.worker.host or self.worker.address}"

    def on_worker(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function`` on the run's worker beside its task (``Client.run``) and return its answer."""
        try:
            return self.client.run(function, *args, workers=[self.worker.address])[self.worker.address]
        except KeyError:
            raise self.worker_lost() from None

    def worker_lost(self) -> ClusterError:
        """The error that says the run's worker left the cluster."""
        return ClusterError(
            f"The Dask worker training this run ({self.worker.host or self.worker.address}) left the cluster "
            f"mid-run: it died or was stopped.{self.kept()} Start the run again once a worker is back."
        )

    def kept(self) -> str:
        """A sentence on the adapter that arrived last: where it is, or that none had arrived."""
        return (
            f" The last adapter that arrived stays on disk (and live in napari): {self.out}."
            if (self.out.exists())
            else " No adapter had arrived yet."
        )


def run_on_cluster(
    job: Any, emit: Emit, should_stop: Callable[[], bool] | None = None, say: Say = print
) -> RunRecord:
    """Train ``job`` (a :class:`~..training.job.TrainingJob` naming a cluster) on a worker of that cluster.

    Raises
    ------
    ClusterError
        The cluster cannot be reached, has no suitable worker, or lost the run.
    SamPeftError
        Bad input, as a local run raises it (reported by the worker).
    """
    target = ClusterTarget.from_job(job)
    if target is None:
        raise ClusterError("This run names no cluster: give --cluster ADDRESS or --scheduler-file FILE.")
    warning = target.warning()
    if warning:
        say(f"warning: {warning}")
    job = job.with_run_folder()
    out = job.adapter_path
    client = connect(target)
    try:
        info = describe_cluster(client)
        worker = info.choose(job.cluster_gpu)
        say(f"{info.describe()} Training on {worker.describe()}.")
        run_id = f"{out.parent.name}-{uuid.uuid4().hex[:8]}".replace("_", "-")
        run = RemoteRun(client, target, worker, "".join(c for c in run_id if c.isalnum() or c == "-"), out, emit)
        manifest, job_files, files = _manifest(job)
        _send(run, files)
        say(f"sent {run.transfer.sent_files} of {run.transfer.files} files ({run.transfer.sent_bytes:,} bytes)")
        _submit(run, job, manifest, job_files)
        return _follow(run, should_stop)
    finally:
        client.close(timeout=5)


def attach_to_run(
    run_dir: str | Path, target: ClusterTarget | None, emit: Emit, should_stop: Callable[[], bool] | None = None
) -> RunRecord:
    """Follow again a cluster run recorded in ``run_dir`` (its ``run.json``): replay its events and go on.

    Raises
    ------
    ClusterError
        Not a cluster run, the cluster cannot be reached, or its worker is gone.
    """
    record = read_run(Path(run_dir) / RECORD_NAME)
    remote = record.remote
    if not remote:
        raise ClusterError(f"{run_dir} is a run on this machine, not on a cluster: nothing to reconnect to.")
    target = target or ClusterTarget(address=remote["address"])
    client = connect(target)
    try:
        workers = client.nthreads()
        worker = WorkerInfo(remote["worker"], remote.get("host", ""), int(workers.get(remote["worker"], 0)), 0)
        run = RemoteRun(client, target, worker, remote["run_id"], Path(record.adapter), emit)
        run.folder = remote.get("folder", "")
        if remote["worker"] not in workers:
            raise ClusterError(
                f"The worker of this run ({worker.host or worker.address}) is no longer in the cluster at "
                f"{target.describe()}; its adapters were in {remote.get('folder', '')} on {worker.host}."
                f"{run.kept()}"
            )
        return _follow(run, should_stop, replay=True)
    finally:
        client.close(timeout=5)


def _manifest(job: Any) -> tuple[Manifest, dict[str, list[str]], dict[str, Path]]:
    """The store's files by hash; the job's other files here (a checkpoint, the adapter a continuation starts
    from) as {job field: [file name, hash]}; and where each hash is on this machine."""
    store = Path(job.store)
    if not store.is_dir():
        raise ClusterError(f"The store {store} does not exist: there is nothing to train on.")
    cache = HashCache(default_cache_dir() / "cluster" / "client-hashes.json")
    manifest = folder_manifest(store, cache)
    files = {digest: store / relative for relative, (digest, _size) in manifest.items()}
    job_files: dict[str, list[str]] = {}
    for name in ("model", "from_adapter"):  # each goes to the worker once, like the store's files
        value = getattr(job, name)
        if value is not None and Path(value).is_file():
            digest = cache.hash(Path(value))
            files[digest] = Path(value)
            job_files[name] = [Path(value).name, digest]
    cache.save()
    return manifest, job_files, files


def _send(run: RemoteRun, files: dict[str, Path]) -> None:
    """Send the files the worker does not have yet."""
    missing = run.on_worker(missing_blobs, list(files))
    run.transfer = Transfer(files=len(files), sent_files=len(missing))
    for batch in batches(files, missing):
        run.on_worker(put_blobs, batch)
        run.transfer.sent_bytes += sum(len(data) for data in batch.values())


def _submit(run: RemoteRun, job: Any, manifest: Manifest, job_files: dict[str, list[str]]) -> None:
    from dataclasses import asdict

    values = {key: value for key, value in asdict(job).items()}
    resources = {"GPU": 1} if job.cluster_gpu and "GPU" in run.worker.resources else None
    run.future = run.client.submit(
        train_on_worker,
        values,
        manifest,
        run.run_id,
        job_files,
        key=f"napari-sam-peft-train-{run.run_id}",
        workers=[run.worker.address],
        allow_other_workers=False,
        resources=resources,
        retries=0,
        pure=False,
    )


def _follow(run: RemoteRun, should_stop: Callable[[], bool] | None, replay: bool = False) -> RunRecord:
    """Report the run's events until it ends; fetch each best adapter; watch for faults."""
    # in the worker's order (``seq``): while the history is replayed, newer events may already arrive
    # through the subscription, and the older ones must not be dropped as seen
    arrived: queue.PriorityQueue[tuple[int, int, dict[str, Any]]] = queue.PriorityQueue()
    count = itertools.count()

    def put(message: dict[str, Any]) -> None:
        arrived.put((int(message.get("seq", 0)), next(count), message))

    topic = event_topic(run.run_id)
    run.client.subscribe_topic(topic, lambda event: put(event[1]))
    if replay:
        for _, message in run.client.get_events(topic):
            put(message)
    asked_to_stop = False
    answered = last_check = time.monotonic()
    try:
        while True:
            try:
                message = arrived.get(timeout=0.25)[2]
            except queue.Empty:
                message = None
            if message is not None and int(message.get("seq", 0)) > run.seen:
                run.seen = int(message.get("seq", 0))
                event = event_from_json(str(message.get("line", "")))
                if event is not None:
                    record = _report(run, event)
                    if record is not None:
                        return record
            if not asked_to_stop and should_stop is not None and should_stop():
                asked_to_stop = True
                _ask_to_stop(run)
            if time.monotonic() - last_check >= HEARTBEAT_SECONDS:
                last_check = time.monotonic()
                answered = _check(run, answered)
    except BaseException as error:
        _ask_to_stop(run, cancel=True)  # the run ends here: it should not go on training on the cluster
        if isinstance(error, ClusterError):  # the worker's record still says "running": say how it ended
            _record_lost(run, str(error))
        raise
    finally:
        run.client.unsubscribe_topic(topic)


def _check(run: RemoteRun, answered: float) -> float:
    """Raise if the worker left or the scheduler has not answered for :data:`LOST_AFTER` seconds; returns
    when it last answered."""
    try:
        workers = run.client.nthreads(callback_timeout=LOST_AFTER / 2)
    except (OSError, TimeoutError, RuntimeError):
        if time.monotonic() - answered < LOST_AFTER:
            return answered
        raise ClusterError(
            f"The Dask scheduler at {run.target.describe()} stopped answering ({LOST_AFTER:.0f} s without a "
            f"reply): it stopped, or the network dropped.{run.kept()} The run may still go on on the cluster: "
            f"napari-sam-peft cluster attach {run.out.parent} follows it again once it answers."
        ) from None
    if run.worker.address not in workers:
        raise run.worker_lost()
    if run.future is not None and run.future.status == "error":
        error = run.future.exception()
        raise ClusterError(f"The training task failed on the worker: {type(error).__name__}: {error}.{run.kept()}")
    return time.monotonic()


def _ask_to_stop(run: RemoteRun, cancel: bool = False) -> None:
    """Set the run's stop flag (it finishes its step and keeps its best adapter); ``cancel`` also releases
    the task. Best effort: the cluster may be gone."""
    from distributed import Event as DaskEvent

    try:
        DaskEvent(stop_flag_name(run.run_id), client=run.client).set()
        if cancel and run.future is not None:
            run.client.cancel(run.future)
    except Exception:  # noqa: BLE001 - a lost cluster cannot be asked anything; the fault is reported already
        pass


def _report(run: RemoteRun, event: Event) -> RunRecord | None:
    """Report one event with this machine's paths; returns the run's record once it has ended."""
    local = str(run.out)
    if isinstance(event, Started):
        _save_record(run, fetch_adapter=False)
        device = f"{event.device} of Dask worker {run.worker.host or run.worker.address}"
        run.emit(replace(event, run_dir=str(run.out.parent), path=local, device=device))
    elif isinstance(event, Best):
        _save_record(run, fetch_adapter=True)
        run.emit(replace(event, path=local))
    elif isinstance(event, Finished):
        record = _save_record(run, fetch_adapter=True)
        run.emit(replace(event, path=local))
        return record
    elif isinstance(event, Error):
        _save_record(run, fetch_adapter=False)
        raise RemoteRunError(Error(event.kind, event.message.split(" The last good adapter")[0] + run.kept()))
    else:
        run.emit(event)
    return None


def _record_lost(run: RemoteRun, why: str) -> None:
    """Mark the run "failed" in its record here, with why (``cluster attach`` rewrites it if the run went on)."""
    path = run.out.parent / RECORD_NAME
    try:
        record = read_run(path)
    except (OSError, ValueError, KeyError, TypeError):
        record = RunRecord(adapter=str(run.out), ran_on=run.ran_on, remote=run.remote)
    record.status, record.error, record.finished = "failed", why, now()
    record.save(path)


def _save_record(run: RemoteRun, fetch_adapter: bool) -> RunRecord:
    """Copy the worker's record (and, with ``fetch_adapter``, its best adapter, checked by its hash) here."""
    import hashlib

    answer = run.on_worker(read_run_files, run.run_id, fetch_adapter)
    run.folder = str(answer.get("folder", run.folder))
    data = answer.get("adapter")
    if data is not None:
        if hashlib.sha256(data).hexdigest() != answer.get("sha256"):
            raise ClusterError("An adapter arrived damaged from the worker (its sha256 differs); the run stops.")
        write_atomic(run.out, data)
    values = json.loads(answer["record"]) if answer.get("record") else {"adapter": str(run.out)}
    record = RunRecord.from_json({**values, "adapter": str(run.out)}, run_dir=run.out.parent)
    record.ran_on, record.remote = run.ran_on, run.remote
    record.save(run.out.parent / RECORD_NAME)
    return record
