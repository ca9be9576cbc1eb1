"""The training worker process: events, stop, kill, errors, its command line."""

from __future__ import annotations

import os
import sys
import time

import pytest

from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.peft import Adapter
from napari_sam_peft.core.training.events import Event
from napari_sam_peft.core.training.runs import list_runs, runs_dir
from napari_sam_peft.core.training.worker import TrainingProcess
from tests.core.training.conftest import _job

pytestmark = pytest.mark.slow  # each test starts a training process


def _run_until(process: TrainingProcess, predicate, timeout: float = 120) -> list[Event]:
    seen: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = process.poll()
        seen += events
        if any(predicate(e) for e in events) or process.terminal_event is not None:
            return seen
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"timed out; events so far: {[e.event for e in seen]}")


def test_a_run_in_the_worker_reports_events_and_writes_a_loadable_adapter(store):
    process = TrainingProcess(_job(store, evaluate=True)).start()
    events = _run_until(process, lambda e: e.event == "finished")
    assert process.wait(30) == 0
    kinds = [e.event for e in events]
    assert kinds[0] == "started" and kinds[1] == "prepared" and kinds[-1] == "finished"
    progress = [e for e in events if e.event == "progress"]
    assert [e.step for e in progress] == [1, 2, 3, 4]
    assert {"loss", "val_score", "its_per_second", "eta_seconds"} <= set(progress[0].values())
    evaluation = next(e for e in events if e.event == "evaluation")
    assert set(evaluation.base) == {"point", "box", "i_p", "i_b", "n_objects"}
    adapter = Adapter.load(process.path)
    assert adapter.spec.preset == "late_lora" and adapter.spec.blocks == (3,)
    (record,) = list_runs(store.path)
    assert record.status == "completed" and record.best_step == adapter.metrics["step"]
    assert process.path.parent.parent == runs_dir(store.path)


def test_stop_keeps_the_best_adapter_and_ends_cleanly(store):
    process = TrainingProcess(_job(store, steps=500)).start()
    _run_until(process, lambda e: e.event == "best")
    process.stop()
    events = _run_until(process, lambda e: e.event == "finished")
    assert process.wait(30) == 0
    assert events[-1].status == "stopped"
    assert Adapter.load(process.path).spec.preset == "late_lora"
    assert list_runs(store.path)[0].status == "stopped"


def test_killing_the_worker_is_reported_and_leaves_the_last_adapter_whole(store):
    process = TrainingProcess(_job(store, steps=500)).start()
    _run_until(process, lambda e: e.event == "best")
    process.kill()
    events = _run_until(process, lambda e: e.event == "error")
    error = events[-1]
    assert error.kind == "crash" and "killed" in error.message
    assert str(process.path) in error.message
    Adapter.load(process.path)  # the last best adapter is intact


def test_out_of_memory_in_the_worker_is_an_error_event_with_advice(store):
    env = dict(os.environ, NAPARI_SAM_PEFT_TEST_FAULT="oom")
    process = TrainingProcess(_job(store, steps=20), env=env).start()
    events = _run_until(process, lambda e: e.event == "error")
    assert process.wait(30) == 3
    assert events[-1].kind == "out_of_memory"
    assert "late_lora" in events[-1].message and "last good adapter" in events[-1].message
    assert list_runs(store.path)[0].status == "failed"


def test_a_store_without_training_objects_is_a_bad_input_event(tmp_path):
    empty = AnnotationStore.create(tmp_path / "empty.sampeft.zarr")
    process = TrainingProcess(_job(empty)).start()
    events = _run_until(process, lambda e: e.event == "error")
    assert process.wait(30) == 2
    assert events[-1].kind == "bad_input" and "commit objects" in events[-1].message


def test_the_worker_runs_the_cli_entry_point(store):
    process = TrainingProcess(_job(store))
    assert process.command[:4] == [sys.executable, "-m", "napari_sam_peft.cli", "train"]
    assert "--events" in process.command


def test_a_stop_request_to_a_run_that_has_ended_is_a_no_op(tmp_path):
    empty = AnnotationStore.create(tmp_path / "empty.sampeft.zarr")
    process = TrainingProcess(_job(empty))
    process.stop()  # never started: nothing to stop
    process.start()
    _run_until(process, lambda e: e.event == "error")
    assert process.wait(30) == 2
    process.close()  # removes the stop file's folder, as the widget does when a run ends
    assert not process.stop_file.parent.exists()
    process.stop()  # closing napari after the run: no FileNotFoundError in a Qt slot
    assert not process.stop_file.exists()


def test_closing_a_running_worker_lets_it_stop_by_itself_within_the_grace(store):
    """What napari's quit does: the worker finishes its step, writes its adapter, and nothing is left running."""
    process = TrainingProcess(_job(store, steps=500)).start()
    _run_until(process, lambda e: e.event == "best")
    process.close(grace=120)  # far more than a step of the test model: it stops by itself, unkilled
    assert not process.running and process.returncode == 0
    assert list_runs(store.path)[0].status == "stopped"
    assert not process.stop_file.parent.exists()
    process.close()  # a second close is a no-op
