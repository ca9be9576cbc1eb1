"""Run folders and run records: ``run.json`` written whole, read back as the same record."""

from __future__ import annotations

import json

from napari_sam_peft.core.evaluation.report import EvaluationReport
from napari_sam_peft.core.training.runs import RECORD_NAME, RunRecord, list_runs, new_run_dir, read_run, runs_dir

SCORES = {"point": 0.5, "box": 0.6, "i_p": 0.7, "i_b": 0.8, "n_objects": 3}


def _record(run_dir) -> RunRecord:
    return RunRecord(
        job={"store": "cells.sampeft.zarr", "steps": 4},
        preset="late_lora",
        method="late_lora (lora, blocks 3)",
        adapter=str(run_dir / "adapter.safetensors"),
        status="completed",
        started="2026-11-26T10:15:00",
        snapshot="abc",
        best_score=0.5,
        best_step=2,
        curve=[[1, 0.9, None], [2, 0.8, 0.5]],
        validation={"validation": "validation split", "measured_on": "the store's validation split"},
        evaluation=EvaluationReport("validation split", "the store's validation split", 1, 3, SCORES, SCORES),
        finished="2026-11-26T10:16:00",
    )


def test_run_folders_sit_next_to_the_store_named_by_time_and_preset(tmp_path):
    store = tmp_path / "cells.sampeft.zarr"
    assert runs_dir(store) == tmp_path / "cells.adapters"
    first, second = new_run_dir(store, "lora"), new_run_dir(store, "lora")
    assert first.parent == second.parent == runs_dir(store) and first != second
    assert first.name.endswith("-lora") and first.is_dir()


def test_a_record_round_trips_through_run_json(tmp_path):
    run_dir = new_run_dir(tmp_path / "cells.sampeft.zarr", "late_lora")
    record = _record(run_dir)
    record.save(run_dir / RECORD_NAME)
    assert read_run(run_dir / RECORD_NAME) == record
    (listed,) = list_runs(tmp_path / "cells.sampeft.zarr")
    assert listed == record and listed.run_dir == run_dir
    written = json.loads((run_dir / RECORD_NAME).read_text())
    assert written["evaluation"]["base"] == SCORES and "run_dir" not in written
    assert (listed.steps, listed.store.name) == (4, "cells.sampeft.zarr")  # an older record's job held the steps


def test_a_record_keeps_the_job_as_given_and_what_the_run_took(tmp_path):
    from napari_sam_peft.core.training.job import TrainingJob

    job = TrainingJob(store=tmp_path / "cells.sampeft.zarr", model="demo", preset="late_lora")
    record = RunRecord(job=job.to_json(), adapter="a.safetensors", lr=1e-3, steps=100)
    record.save(tmp_path / RECORD_NAME)
    read = read_run(tmp_path / RECORD_NAME)
    assert TrainingJob.from_json(read.job) == job and (read.model, read.lr, read.steps) == ("demo", 1e-3, 100)


def test_older_records_and_broken_files_are_read_or_left_out(tmp_path):
    store = tmp_path / "cells.sampeft.zarr"
    old, broken, foreign = (new_run_dir(store, name) for name in ("old", "broken", "foreign"))
    (old / RECORD_NAME).write_text(json.dumps({"adapter": "a.safetensors", "status": "stopped", "someday": 1}))
    (broken / RECORD_NAME).write_text("{not json")
    (foreign / RECORD_NAME).write_text(json.dumps({"status": "completed"}))  # no adapter: not a run record
    (record,) = list_runs(store)
    assert record.model is None and record.store is None and record.job == {}
    assert (record.status, record.adapter, record.evaluation, record.curve) == (
        "stopped",
        "a.safetensors",
        None,
        [],
    )
