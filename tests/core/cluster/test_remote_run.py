"""The client side of a cluster run, with a fake Dask client whose worker is this process: events reported
with this machine's paths, adapters fetched and checked, records copied, and one message for each fault."""

from __future__ import annotations

import dataclasses
import re
import time

import pytest

from napari_sam_peft.core.cluster import remote_run
from napari_sam_peft.core.cluster.blobs import BlobStore, folder_manifest
from napari_sam_peft.core.cluster.connect import ClusterInfo, GpuInfo, WorkerInfo
from napari_sam_peft.core.cluster.remote_run import RemoteRun, RemoteRunError, attach_to_run, run_on_cluster
from napari_sam_peft.core.cluster.target import ClusterTarget
from napari_sam_peft.core.cluster.worker_tasks import (
    CLUSTER_DIR_ENV,
    event_topic,
    run_folder,
    stop_flag_name,
    train_on_worker,
)
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.errors import ClusterError
from napari_sam_peft.core.training.events import Best, Error, Finished, Progress, Started
from napari_sam_peft.core.training.job import TrainingJob
from napari_sam_peft.core.training.runs import RECORD_NAME, RunRecord, read_run

GIB = 1024**3
ADDRESS = "tcp://10.0.0.9:40000"
GPU01 = WorkerInfo(ADDRESS, "gpu01", 8, 64 * GIB, (GpuInfo("NVIDIA A100", 80 * GIB, 79 * GIB),), {"GPU": 1.0})
TARGET = ClusterTarget("tls://scheduler.example.org:8786")
RUN_ID = "run1-1a2b3c4d"
#: the adapter path as the worker names it in its events
WORKER_ADAPTER = "/scratch/napari-sam-peft/cluster/runs/run1-1a2b3c4d/adapter.safetensors"


class FakeFuture:
    def __init__(self, status="pending", error=None):
        self.status, self.error = status, error

    def exception(self):
        return self.error


class FakeClient:
    """A Dask client whose workers are this process: ``Client.run`` calls the worker function here."""

    def __init__(self, workers=(ADDRESS,)):
        self.workers = list(workers)  # who answers Client.run
        self.alive = list(workers)  # whom the scheduler lists
        self.answering = True
        self.damage = False  # adapters arrive with a byte more than the worker read
        self.asked = []  # (function name, args) of each Client.run
        self.messages = []  # the run's events, sent on subscribing
        self.deliver_later = False  # sent at the next heartbeat instead (after the replayed past)
        self.past = []  # the scheduler's log of the topic (get_events)
        self.subscribed, self.unsubscribed, self.submitted, self.cancelled = [], [], [], []
        self.on_submit = None
        self.closed = False

    def run(self, function, *args, workers):
        self.asked.append((function.__name__, args))
        answers = {worker: function(*args) for worker in workers if worker in self.workers}
        for answer in answers.values():
            if self.damage and isinstance(answer, dict) and answer.get("adapter"):
                answer["adapter"] += b"!"
        return answers

    def nthreads(self, callback_timeout=None):
        if self.deliver_later:
            self._deliver()
        if not self.answering:
            raise OSError("Timed out trying to connect to the scheduler")
        return {worker: 8 for worker in self.alive}

    def subscribe_topic(self, topic, handler):
        self.subscribed.append(topic)
        self.handler = handler
        if not self.deliver_later:
            self._deliver()

    def _deliver(self):
        for message in self.messages:
            self.handler((time.time(), message))
        self.messages = []

    def get_events(self, topic):
        return [(0.0, message) for message in self.past]

    def unsubscribe_topic(self, topic):
        self.unsubscribed.append(topic)

    def submit(self, function, *args, **kwargs):
        self.submitted.append((function, args, kwargs))
        self.future = FakeFuture()
        if self.on_submit is not None:
            self.on_submit(*args)
        return self.future

    def cancel(self, future):
        self.cancelled.append(future)

    def close(self, timeout=None):
        self.closed = True


@pytest.fixture(autouse=True)
def folders(tmp_path, monkeypatch):
    """The worker's folder and this machine's cache folder, both under the test's folder."""
    monkeypatch.setenv(CLUSTER_DIR_ENV, str(tmp_path / "worker"))
    monkeypatch.setenv("NAPARI_SAM_PEFT_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def run(tmp_path):
    """A run followed from this machine: (run, the events it reported here)."""
    events = []
    out = tmp_path / "here" / "run1" / "adapter.safetensors"
    return RemoteRun(FakeClient(), TARGET, GPU01, RUN_ID, out, events.append), events


def _on_worker(run_id=RUN_ID, adapter=None, **record):
    """What the worker's run has written: its run.json and, with ``adapter`` bytes, its best adapter."""
    folder = run_folder(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    if adapter is not None:
        (folder / "adapter.safetensors").write_bytes(adapter)
    RunRecord(adapter=str(folder / "adapter.safetensors"), **record).save(folder / RECORD_NAME)
    return folder


def _started(**values):
    return Started(**{
        "run_dir": WORKER_ADAPTER.rsplit("/", 1)[0], "path": WORKER_ADAPTER, "preset": "late_lora",
        "method": "lora", "trainable_params": 1000, "validation": "validation split", "measured_on": "the val",
        "train_images": 2, "train_objects": 17, "val_images": 1, "val_objects": 5, "held_out_images": [],
        "held_out_objects": [], "device": "cuda:0", "steps": 40, "world_size": 1, **values,
    })  # fmt: skip


PROGRESS = Progress(step=1, steps=40, loss=0.5, val_score=None, best_score=None, its_per_second=2.0, eta_seconds=9)
BEST = Best(path=WORKER_ADAPTER, step=10, score=0.71)
FINISHED = Finished("completed", WORKER_ADAPTER, 0.71, "validation split", "the val")


def _messages(*events):
    return [{"seq": n, "line": event.to_json()} for n, event in enumerate(events)]


# what the run says about itself


def test_the_run_record_names_the_scheduler_the_worker_and_the_folder_there(run):
    run, _ = run
    run.folder = "/scratch/runs/x"
    assert run.ran_on == "Dask cluster tls://scheduler.example.org:8786, worker gpu01"
    assert run.remote == {"address": "tls://scheduler.example.org:8786", "worker": ADDRESS, "host": "gpu01",
                          "run_id": RUN_ID, "folder": "/scratch/runs/x"}  # fmt: skip
    nameless = RemoteRun(run.client, TARGET, WorkerInfo(ADDRESS, "", 1, GIB), RUN_ID, run.out, run.emit)
    assert nameless.ran_on.endswith(f"worker {ADDRESS}")  # a worker without a host name: its address


def test_a_lost_worker_says_which_and_where_the_last_adapter_is(run):
    run, _ = run
    message = str(run.worker_lost())
    assert message.startswith("The Dask worker training this run (gpu01) left the cluster mid-run: it died or")
    assert "No adapter had arrived yet." in message and message.endswith("once a worker is back.")
    run.out.parent.mkdir(parents=True)
    run.out.write_bytes(b"adapter")
    assert run.kept() == f" The last adapter that arrived stays on disk (and live in napari): {run.out}."
    assert str(run.out) in str(run.worker_lost())


def test_a_worker_function_runs_on_the_runs_worker_and_a_gone_worker_is_a_lost_run(run):
    run, _ = run
    assert run.on_worker(lambda a, b: a + b, 2, 3) == 5
    run.client.workers = []  # Client.run answers for the workers it reached
    with pytest.raises(ClusterError, match=r"\(gpu01\) left the cluster mid-run"):
        run.on_worker(lambda: 1)


# events, adapters and records


def test_started_is_reported_with_this_machines_paths_and_the_workers_record_copied(run):
    run, events = run
    folder = _on_worker(adapter=b"not fetched yet", status="running", job={"steps": 40})
    assert remote_run._report(run, _started()) is None

    (started,) = events
    assert started.run_dir == str(run.out.parent) and started.path == str(run.out)
    assert started.device == "cuda:0 of Dask worker gpu01" and started.train_objects == 17
    assert run.client.asked == [("read_run_files", (RUN_ID, False))]
    assert not run.out.exists()  # the worker's adapter is fetched at "best", not at "started"
    record = read_run(run.out.parent / RECORD_NAME)
    assert record.adapter == str(run.out) and record.status == "running" and record.job == {"steps": 40}
    assert record.ran_on == run.ran_on and record.remote["folder"] == str(folder) == run.folder


def test_each_best_adapter_arrives_checked_and_a_damaged_one_stops_the_run(run):
    run, events = run
    _on_worker(adapter=b"first best", best_score=0.6)
    remote_run._report(run, BEST)
    assert run.out.read_bytes() == b"first best" and events == [Best(path=str(run.out), step=10, score=0.71)]
    _on_worker(adapter=b"second best", best_score=0.7)
    remote_run._report(run, BEST)
    assert run.out.read_bytes() == b"second best" and read_run(run.out.parent / RECORD_NAME).best_score == 0.7

    _on_worker(adapter=b"third best")
    run.client.damage = True
    with pytest.raises(ClusterError, match=r"arrived damaged from the worker \(its sha256 differs\)"):
        remote_run._report(run, BEST)
    assert run.out.read_bytes() == b"second best" and len(events) == 2  # the last good one stays


def test_finished_returns_the_workers_record_with_this_machines_adapter(run):
    run, events = run
    _on_worker(adapter=b"best", status="completed", best_score=0.71, best_step=10)
    record = remote_run._report(run, FINISHED)
    assert record.status == "completed" and record.best_step == 10 and record.adapter == str(run.out)
    assert read_run(run.out.parent / RECORD_NAME).to_json() == record.to_json()
    assert events[-1].path == str(run.out) and events[-1].status == "completed"
    assert run.out.read_bytes() == b"best"


def test_a_worker_without_a_record_yet_gives_a_record_of_the_local_adapter(run):
    run, _ = run
    run_folder(RUN_ID).mkdir(parents=True)
    remote_run._report(run, _started())
    record = read_run(run.out.parent / RECORD_NAME)
    assert record.adapter == str(run.out) and record.remote["run_id"] == RUN_ID


def test_an_error_on_the_worker_names_the_adapter_here_not_the_workers(run):
    run, events = run
    _on_worker(adapter=b"best", status="failed")
    run.out.parent.mkdir(parents=True)
    run.out.write_bytes(b"best")
    error = Error("bad_input", f"The store has no training objects. The last good adapter is unchanged: "
                               f"{WORKER_ADAPTER}.")  # fmt: skip
    with pytest.raises(RemoteRunError) as raised:
        remote_run._report(run, error)
    assert raised.value.event.kind == "bad_input" and WORKER_ADAPTER not in str(raised.value)
    assert raised.value.event.message == (
        "The store has no training objects. The last adapter that arrived stays on disk (and live in napari): "
        f"{run.out}."
    )
    assert events == [] and read_run(run.out.parent / RECORD_NAME).status == "failed"


def test_other_events_pass_through_unchanged_without_asking_the_worker(run):
    run, events = run
    assert remote_run._report(run, PROGRESS) is None
    assert events == [PROGRESS] and run.client.asked == []


def test_a_lost_run_is_recorded_as_failed_with_why(run):
    run, _ = run
    _on_worker(adapter=b"best", best_score=0.6)
    remote_run._report(run, BEST)
    remote_run._record_lost(run, "The worker left.")
    record = read_run(run.out.parent / RECORD_NAME)
    assert record.status == "failed" and record.error == "The worker left." and record.finished
    assert record.best_score == 0.6  # the rest of the record stays

    other = RemoteRun(run.client, TARGET, GPU01, "run2-00000000", run.out.parent.parent / "run2" / "a.safetensors",
                      run.emit)  # fmt: skip
    remote_run._record_lost(other, "The scheduler stopped answering.")  # no record here yet
    record = read_run(other.out.parent / RECORD_NAME)
    assert record.status == "failed" and record.adapter == str(other.out) and record.remote == other.remote


# faults found by the heartbeat


def test_a_silent_scheduler_is_waited_for_then_the_run_is_lost_with_how_to_follow_it_again(run):
    run, _ = run
    run.client.answering = False
    answered = time.monotonic()
    assert remote_run._check(run, answered) == answered  # not yet LOST_AFTER seconds
    with pytest.raises(ClusterError) as lost:
        remote_run._check(run, time.monotonic() - remote_run.LOST_AFTER - 1)
    message = str(lost.value)
    assert message.startswith("The Dask scheduler at tls://scheduler.example.org:8786 stopped answering (10 s")
    assert f"napari-sam-peft cluster attach {run.out.parent} follows it again" in message
    run.client.answering = True
    assert remote_run._check(run, answered - 100) > answered  # it answered again


def test_a_gone_worker_or_a_failed_task_ends_the_run_with_one_message(run):
    run, _ = run
    run.future = FakeFuture("error", RuntimeError("CUDA error: an illegal memory access"))
    with pytest.raises(ClusterError, match="^The training task failed on the worker: RuntimeError: CUDA error: an "
                                           "illegal memory access. No adapter had arrived yet.$"):  # fmt: skip
        remote_run._check(run, time.monotonic())
    run.client.alive = []
    with pytest.raises(ClusterError, match=r"\(gpu01\) left the cluster mid-run"):
        remote_run._check(run, time.monotonic())


def test_asking_to_stop_sets_the_runs_stop_flag_and_a_lost_cluster_is_no_error(run, dask_events):
    run, _ = run
    run.future = FakeFuture()
    remote_run._ask_to_stop(run)
    assert dask_events.states == {stop_flag_name(RUN_ID): True} and run.client.cancelled == []
    remote_run._ask_to_stop(run, cancel=True)
    assert run.client.cancelled == [run.future]
    dask_events.broken = True
    remote_run._ask_to_stop(run, cancel=True)  # nothing raised: the fault is reported already


# following a run


def test_a_run_is_followed_to_its_end_each_event_once_in_order(run, dask_events):
    run, events = run
    _on_worker(adapter=b"best", status="completed", best_score=0.71)
    lines = [_started().to_json(), PROGRESS.to_json(), PROGRESS.to_json(), "not an event", BEST.to_json(),
             '{"event": "from_the_future", "version": 9}', FINISHED.to_json()]  # fmt: skip
    seqs = [0, 1, 1, 2, 3, 4, 5]  # the second progress is the first again
    run.client.messages = [{"seq": seq, "line": line} for seq, line in zip(seqs, lines, strict=True)]
    record = remote_run._follow(run, should_stop=lambda: False)

    assert [e.event for e in events] == ["started", "progress", "best", "finished"]
    assert record.status == "completed" and run.out.read_bytes() == b"best" and run.seen == 5
    assert run.client.subscribed == run.client.unsubscribed == [event_topic(RUN_ID)]
    assert dask_events.states == {}  # nobody asked it to stop


def test_following_again_replays_the_past_events_and_skips_what_arrives_twice(run, dask_events, monkeypatch):
    run, events = run
    monkeypatch.setattr(remote_run, "HEARTBEAT_SECONDS", 0.0)
    _on_worker(adapter=b"best", status="completed")
    messages = _messages(_started(), PROGRESS, BEST, FINISHED)
    run.client.past = messages[:3]
    run.client.messages = messages[2:]  # the subscription repeats the best the log holds too
    run.client.deliver_later = True
    record = remote_run._follow(run, should_stop=None, replay=True)
    assert [e.event for e in events] == ["started", "progress", "best", "finished"]
    assert record.status == "completed"


def test_events_that_arrive_while_the_past_is_replayed_do_not_hide_it(run, dask_events):
    """The subscription delivers the newest events before the scheduler's log of the older ones: every event
    is still reported once, in the worker's order."""
    run, events = run
    _on_worker(adapter=b"best", status="completed")
    messages = _messages(_started(), PROGRESS, BEST, FINISHED)
    run.client.past = messages[:3]
    run.client.messages = messages[3:]  # delivered on subscribing, before get_events answers
    record = remote_run._follow(run, should_stop=None, replay=True)
    assert [e.event for e in events] == ["started", "progress", "best", "finished"]
    assert record.status == "completed"


def test_asking_a_followed_run_to_stop_sets_its_flag_once(run, dask_events):
    run, _ = run
    _on_worker(adapter=b"best", status="stopped")
    run.client.messages = _messages(_started(), PROGRESS, PROGRESS, FINISHED)
    asked = []
    record = remote_run._follow(run, should_stop=lambda: asked.append(1) or True)
    assert record.status == "stopped" and len(asked) == 1  # asked once, then the run ends on its own
    assert dask_events.states == {stop_flag_name(RUN_ID): True} and run.client.cancelled == []


def test_a_worker_lost_mid_run_is_recorded_here_and_the_task_released(run, dask_events, monkeypatch):
    run, events = run
    monkeypatch.setattr(remote_run, "HEARTBEAT_SECONDS", 0.0)
    _on_worker(status="running")
    run.client.messages = _messages(_started())
    run.client.alive = []  # the scheduler no longer lists the worker
    run.future = FakeFuture()
    with pytest.raises(ClusterError, match="left the cluster mid-run") as lost:
        remote_run._follow(run, should_stop=None)
    record = read_run(run.out.parent / RECORD_NAME)
    assert record.status == "failed" and record.error == str(lost.value) and record.finished
    assert [e.event for e in events] == ["started"]
    assert dask_events.states == {stop_flag_name(RUN_ID): True} and run.client.cancelled == [run.future]
    assert run.client.unsubscribed == [event_topic(RUN_ID)]


def test_a_run_that_fails_on_the_worker_keeps_the_workers_record(run, dask_events):
    run, _ = run
    _on_worker(status="failed", error="out of memory")
    run.client.messages = _messages(_started(), Error("out_of_memory", "Training ran out of memory on cuda:0."))
    with pytest.raises(RemoteRunError, match="ran out of memory"):
        remote_run._follow(run, should_stop=None)
    record = read_run(run.out.parent / RECORD_NAME)
    assert record.status == "failed" and record.error == "out of memory"  # not rewritten as "lost"


# the whole run, and following it again


def _store(tmp_path):
    store = AnnotationStore.create(tmp_path / "cells.sampeft.zarr")
    sample = make_sample("cells", seed=1, shape=(48, 48))
    store.add_labels(sample.image, sample.labels, split="train")
    return store.path


def test_a_run_on_a_cluster_sends_the_store_once_trains_on_the_chosen_worker_and_brings_the_adapter(
    tmp_path, monkeypatch
):
    cpu = WorkerInfo("tcp://10.0.0.8:40000", "cpu01", 32, 256 * GIB)
    client = FakeClient(workers=(cpu.address, ADDRESS))
    reached = []
    monkeypatch.setattr(remote_run, "connect", lambda target: reached.append(target) or client)
    monkeypatch.setattr(remote_run, "describe_cluster", lambda c: ClusterInfo("tcp://10.0.0.5:8786", (cpu, GPU01)))

    def start(values, manifest, run_id, job_files):  # the worker's run begins, writes, and reports
        _on_worker(run_id, adapter=b"the best adapter", status="completed", best_score=0.71)
        client.messages = _messages(_started(), BEST, FINISHED)

    client.on_submit = start
    store = _store(tmp_path)
    out = tmp_path / "my_run" / "adapter.safetensors"
    job = TrainingJob(store=store, model="demo", preset="late_lora", out=out, cluster="tcp://10.0.0.5:8786",
                      cluster_gpu=True)  # fmt: skip
    said, events = [], []
    record = run_on_cluster(job, events.append, say=said.append)

    unique = dict(folder_manifest(store).values())  # files with the same bytes are sent once
    assert said[0].startswith("warning: tcp://10.0.0.5:8786 is plain tcp")
    assert said[1].endswith(f"Training on {GPU01.describe()}.") and said[1].startswith("Connected to tcp://10.0")
    assert said[2] == f"sent {len(unique)} of {len(unique)} files ({sum(unique.values()):,} bytes)"
    assert BlobStore(tmp_path / "worker" / "blobs").missing(list(unique)) == []
    (function, args, options), = client.submitted  # fmt: skip
    run_id = args[2]
    assert function is train_on_worker and re.fullmatch(r"my-run-[0-9a-f]{8}", run_id)
    assert args[0]["store"] == store and args[0]["model"] == "demo" and args[3] == {}  # demo: loaded by name there
    assert options["key"] == f"napari-sam-peft-train-{run_id}" and options["workers"] == [ADDRESS]
    assert options["allow_other_workers"] is False and options["resources"] == {"GPU": 1}
    assert options["retries"] == 0
    assert [e.event for e in events] == ["started", "best", "finished"]
    assert record.status == "completed" and record.adapter == str(out) and record.remote["run_id"] == run_id
    assert out.read_bytes() == b"the best adapter" and client.closed
    assert reached == [ClusterTarget("tcp://10.0.0.5:8786")]

    said.clear()
    run_on_cluster(job, events.append, say=said.append)
    assert said[2] == f"sent 0 of {len(unique)} files (0 bytes)"  # the worker has them all


def test_a_run_without_a_cluster_or_a_store_is_refused(tmp_path, monkeypatch):
    job = TrainingJob(store=tmp_path / "none.sampeft.zarr", model="demo", preset="late_lora",
                      out=tmp_path / "a.safetensors")  # fmt: skip
    with pytest.raises(ClusterError, match="This run names no cluster: give --cluster ADDRESS"):
        run_on_cluster(job, lambda e: None)
    client = FakeClient()
    monkeypatch.setattr(remote_run, "connect", lambda target: client)
    monkeypatch.setattr(remote_run, "describe_cluster", lambda c: ClusterInfo("tcp://127.0.0.1:8786", (GPU01,)))
    job = dataclasses.replace(job, cluster="tcp://127.0.0.1:8786")
    said = []
    with pytest.raises(ClusterError, match=f"The store {re.escape(str(job.store))} does not exist"):
        run_on_cluster(job, lambda e: None, say=said.append)
    assert not said[0].startswith("warning") and client.closed and client.submitted == []


def test_a_run_on_this_machine_cannot_be_followed_on_a_cluster(tmp_path, monkeypatch):
    monkeypatch.setattr(remote_run, "connect", lambda target: pytest.fail("nothing to connect to"))
    RunRecord(adapter=str(tmp_path / "adapter.safetensors")).save(tmp_path / RECORD_NAME)
    with pytest.raises(ClusterError, match="is a run on this machine, not on a cluster: nothing to reconnect to"):
        attach_to_run(tmp_path, None, lambda e: None)


def test_following_again_replays_the_run_or_says_its_worker_is_gone(tmp_path, monkeypatch, dask_events):
    remote = {"address": "tcp://10.0.0.5:8786", "worker": ADDRESS, "host": "gpu01", "run_id": RUN_ID,
              "folder": "/scratch/runs/run1"}  # fmt: skip
    out = tmp_path / "run1" / "adapter.safetensors"
    RunRecord(adapter=str(out), remote=remote, ran_on="Dask cluster").save(out.parent / RECORD_NAME)
    client, reached = FakeClient(workers=()), []
    monkeypatch.setattr(remote_run, "connect", lambda target: reached.append(target) or client)
    with pytest.raises(ClusterError) as gone:
        attach_to_run(out.parent, None, lambda e: None)
    assert str(gone.value) == (
        "The worker of this run (gpu01) is no longer in the cluster at tcp://10.0.0.5:8786; its adapters were in "
        "/scratch/runs/run1 on gpu01. No adapter had arrived yet."
    )
    assert reached == [ClusterTarget(address="tcp://10.0.0.5:8786")] and client.closed

    client = FakeClient()
    _on_worker(adapter=b"best", status="completed")
    client.past = _messages(_started(), BEST, FINISHED)
    events = []
    record = attach_to_run(out.parent, None, events.append)
    assert [e.event for e in events] == ["started", "best", "finished"] and record.status == "completed"
    assert out.read_bytes() == b"best" and record.remote["run_id"] == RUN_ID
