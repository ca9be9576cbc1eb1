"""What runs on a Dask worker, called here as the worker calls it: its folders, the run's files, what it says
about itself, and the training task with a fake worker (events on the run's topic, the stop flag, failures)."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from napari_sam_peft import __version__
from napari_sam_peft.core.cluster import worker_tasks
from napari_sam_peft.core.cluster.blobs import folder_manifest
from napari_sam_peft.core.cluster.worker_tasks import (
    CLUSTER_DIR_ENV,
    cluster_dir,
    event_topic,
    missing_blobs,
    probe_worker,
    put_blobs,
    read_run_files,
    run_folder,
    stop_flag_name,
    train_on_worker,
)
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.training import run as training_run
from napari_sam_peft.core.training.events import Best, Finished, event_from_json
from napari_sam_peft.core.training.job import TrainingJob
from napari_sam_peft.core.training.runs import RunRecord


@pytest.fixture
def worker_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(CLUSTER_DIR_ENV, str(tmp_path / "worker"))
    return tmp_path / "worker"


def test_the_workers_folder_is_the_environments_or_the_cache_folders(tmp_path, monkeypatch):
    monkeypatch.delenv(CLUSTER_DIR_ENV, raising=False)
    monkeypatch.setenv("NAPARI_SAM_PEFT_CACHE", str(tmp_path / "cache"))
    assert cluster_dir() == tmp_path / "cache" / "cluster"
    monkeypatch.setenv(CLUSTER_DIR_ENV, "~/sam-cluster")
    assert cluster_dir() == Path.home() / "sam-cluster"


def test_each_run_has_its_own_folder_topic_and_stop_flag_and_an_id_cannot_leave_the_folder(worker_dir):
    assert run_folder("cells-1a2b3c4d") == worker_dir / "runs" / "cells-1a2b3c4d"
    assert event_topic("a-1") != event_topic("a-2") and stop_flag_name("a-1") != stop_flag_name("a-2")
    assert stop_flag_name("a-1") == "napari-sam-peft-stop-a-1" and event_topic("a-1") == "napari-sam-peft-run-a-1"
    for bad in ("../../etc", "a/b", "", "a b"):
        with pytest.raises(ValueError, match="is not a run id"):
            run_folder(bad)


def test_blobs_sent_to_the_worker_are_kept_in_its_folder(worker_dir):
    data = b"some bytes of a store"
    digest = hashlib.sha256(data).hexdigest()
    assert missing_blobs([digest]) == [digest]
    assert put_blobs({digest: data}) == len(data)
    assert missing_blobs([digest]) == [] and (worker_dir / "blobs").is_dir()


def test_a_runs_files_are_its_record_and_its_best_adapter_with_its_sha256(worker_dir):
    assert read_run_files("run-1") == {"record": None, "folder": str(worker_dir / "runs" / "run-1")}
    folder = run_folder("run-1")
    folder.mkdir(parents=True)
    RunRecord(adapter=str(folder / "adapter.safetensors"), status="running").save(folder / "run.json")
    (folder / "adapter.safetensors").write_bytes(b"adapter bytes")
    answer = read_run_files("run-1")
    assert '"status": "running"' in answer["record"] and answer["adapter"] == b"adapter bytes"
    assert answer["sha256"] == hashlib.sha256(b"adapter bytes").hexdigest()
    assert "adapter" not in read_run_files("run-1", adapter=False)  # the record alone: no bytes sent


def test_a_worker_says_what_it_has():
    alone = probe_worker()
    assert alone["host"] == socket.gethostname() and alone["threads"] == (os.cpu_count() or 1)
    assert alone["memory"] > 0 and alone["resources"] == {}
    assert alone["versions"]["napari_sam_peft"] == __version__ and alone["versions"]["torch"]
    assert isinstance(alone["gpus"], list)

    dask_worker = SimpleNamespace(state=SimpleNamespace(nthreads=3, total_resources={"GPU": 1.0}),
                                  memory_manager=SimpleNamespace(memory_limit=16 * 1024**3))  # fmt: skip
    probed = probe_worker(dask_worker)
    assert probed["threads"] == 3 and probed["memory"] == 16 * 1024**3 and probed["resources"] == {"GPU": 1.0}


# the training task


class FakeWorker:
    """What ``distributed.get_worker()`` gives the task: the events it logs, by topic."""

    def __init__(self):
        self.logged = []

    def log_event(self, topic, message):
        self.logged.append((topic, message))


@pytest.fixture
def worker(worker_dir, monkeypatch, dask_events):
    import distributed

    fake = FakeWorker()
    monkeypatch.setattr(distributed, "get_worker", lambda: fake)
    return fake


def _sent(tmp_path):
    """A store and a model file, sent to the worker's blobs as the client sends them."""
    store = AnnotationStore.create(tmp_path / "here" / "cells.sampeft.zarr")
    sample = make_sample("cells", seed=1, shape=(48, 48))
    store.add_labels(sample.image, sample.labels, split="train")
    manifest = folder_manifest(store.path)
    put_blobs({digest: (store.path / relative).read_bytes() for relative, (digest, _) in manifest.items()})
    model = b"a model file's bytes"
    digest = hashlib.sha256(model).hexdigest()
    put_blobs({digest: model})
    job = TrainingJob(store=store.path, model=str(tmp_path / "here" / "base.safetensors"), preset="late_lora",
                      out=tmp_path / "here" / "a.safetensors", cluster="tcp://10.0.0.5:8786", cluster_gpu=True,
                      tls_ca_file=tmp_path / "ca.pem", cache_dir=tmp_path / "cache")  # fmt: skip
    return store, manifest, asdict(job), {"model": ["base.safetensors", digest]}


def test_the_task_trains_here_on_the_sent_store_and_logs_each_event_on_the_runs_topic(
    tmp_path, worker, monkeypatch
):
    store, manifest, values, job_files = _sent(tmp_path)
    ran = []

    def run_job(job, emit, should_stop):
        ran.append(job)
        emit(Best(path=str(job.out), step=2, score=0.5))
        emit(Finished("completed", str(job.out), 0.5, "training data", "the training data"))
        return RunRecord(adapter=str(job.out), status="completed")

    monkeypatch.setattr(training_run, "run_job", run_job)
    assert train_on_worker(values, manifest, "run-1", job_files) == "completed"

    (job,) = ran
    folder = run_folder("run-1")
    assert job.out == folder / "adapter.safetensors" and job.cache_dir is None
    assert job.cluster is None and job.scheduler_file is None and job.cluster_gpu is False  # trains here
    assert job.tls_ca_file is None and job.tls_cert is None and job.tls_key is None
    assert job.store == folder / "store.sampeft.zarr"
    assert AnnotationStore(job.store).info()["snapshot"] == store.info()["snapshot"]
    assert job.model == str(folder / "model" / "base.safetensors")
    assert (folder / "model" / "base.safetensors").read_bytes() == b"a model file's bytes"
    assert job.preset == "late_lora"

    assert [topic for topic, _ in worker.logged] == [event_topic("run-1")] * 2
    assert [message["seq"] for _, message in worker.logged] == [0, 1]
    assert [event_from_json(message["line"]).event for _, message in worker.logged] == ["best", "finished"]


def test_the_task_looks_at_its_stop_flag_at_most_once_a_second_and_stops_when_it_is_set(
    tmp_path, worker, monkeypatch, dask_events
):
    _, manifest, values, job_files = _sent(tmp_path)
    clock = [1000.0]
    monkeypatch.setattr(worker_tasks, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    answers = []

    def run_job(job, emit, should_stop):
        answers.extend(should_stop() for _ in range(50))  # every step asks; the scheduler is asked once
        dask_events.states[stop_flag_name("run-2")] = True  # the client asks it to stop
        clock[0] += 0.9
        answers.append(should_stop())  # not looked at again within the second
        clock[0] += 0.2
        answers.extend(should_stop() for _ in range(3))
        return RunRecord(adapter=str(job.out), status="stopped" if answers[-1] else "completed")

    monkeypatch.setattr(training_run, "run_job", run_job)
    assert worker_tasks.STOP_POLL_SECONDS == 1.0
    assert train_on_worker(values, manifest, "run-2", job_files) == "stopped"
    assert answers == [False] * 51 + [True] * 3
    assert dask_events.looks == [stop_flag_name("run-2")] * 2  # once set, it is not asked again


def test_a_failing_task_reports_one_error_event_and_says_failed(tmp_path, worker, monkeypatch):
    _, manifest, values, job_files = _sent(tmp_path)

    def run_job(job, emit, should_stop):
        raise SamPeftError("The store has no training objects: annotate some first.")

    monkeypatch.setattr(training_run, "run_job", run_job)
    assert train_on_worker(values, manifest, "run-3", job_files) == "failed"
    ((topic, message),) = worker.logged
    error = event_from_json(message["line"])
    assert topic == event_topic("run-3") and error.kind == "bad_input"
    assert error.message == "The store has no training objects: annotate some first."


def test_a_file_that_was_never_sent_fails_the_task_with_which_one(tmp_path, worker, monkeypatch):
    _, manifest, values, _ = _sent(tmp_path)
    monkeypatch.setattr(training_run, "run_job", lambda *args: pytest.fail("trained without its files"))
    missing = {"from_adapter": ["parent.safetensors", "0" * 64]}
    assert train_on_worker(values, manifest, "run-4", missing) == "failed"
    ((_, message),) = worker.logged
    error = event_from_json(message["line"])
    assert error.kind == "crash"
    assert "parent.safetensors (000000000000...) was not sent to this worker" in error.message
