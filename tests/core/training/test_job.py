"""The training job's one schema: command-line options, the worker's argv and the docs all come from it."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from napari_sam_peft.cli import build_parser
from napari_sam_peft.cli.train import job_from_args
from napari_sam_peft.core.training.job import TrainingJob, format_value, job_field, job_fields, options_table

DOCS = Path(__file__).resolve().parents[3] / "docs"

#: a value other than the default for every field, so each one has to travel on its own
OTHER_VALUES = {
    "store": Path("/data/other.sampeft.zarr"),
    "model": "vit_b_lm",
    "preset": "lora",
    "blocks": "6-11",
    "rank": 16,
    "lr": 3.0e-4,
    "steps": 1234,
    "recipe": "paper",
    "objects_per_image": 3,
    "sub_iterations": 2,
    "validate_every": 7,
    "device": "cuda:1",
    "precision": "bf16",
    "evaluate": True,
    "with_decoder": True,
    "seed": 42,
    "out": Path("/data/runs/cells.safetensors"),
    "cache_dir": Path("/data/cache"),
    "from_adapter": Path("/data/runs/previous/adapter.safetensors"),
    "cluster": "tls://gpu01.example.org:8786",
    "scheduler_file": Path("/shared/scheduler.json"),
    "cluster_gpu": True,
    "tls_ca_file": Path("/certs/ca.pem"),
    "tls_cert": Path("/certs/client.pem"),
    "tls_key": Path("/certs/client.key"),
}


def _parse(argv: list[str]) -> TrainingJob:
    return job_from_args(build_parser().parse_args(["train", *argv]))


def _base(**values) -> TrainingJob:
    """A job with ``values`` set; ``out`` is given, so no run folder is made."""
    required = {"store": Path("/data/cells.sampeft.zarr"), "model": "demo", "preset": "late_lora"}
    return TrainingJob(**{**required, "out": Path("/data/cells.safetensors"), **values})


def test_there_is_another_value_for_every_field():
    assert set(OTHER_VALUES) == {f.name for f in fields(TrainingJob)}


@pytest.mark.parametrize("name", list(OTHER_VALUES))
def test_every_field_survives_argv_and_parsing(name):
    job = _base(**{name: OTHER_VALUES[name]})
    assert getattr(job, name) != getattr(_base(), name)
    assert _parse(job.to_argv()) == job


def test_a_job_with_every_field_set_survives_argv_and_parsing():
    job = TrainingJob(**OTHER_VALUES)
    assert _parse(job.to_argv()) == job


def test_defaults_live_in_the_schema_and_the_command_line_uses_them():
    parsed = _parse(["/data/cells.sampeft.zarr", "--model", "demo", "--preset", "lora"])
    assert parsed == TrainingJob(store=Path("/data/cells.sampeft.zarr"), model="demo", preset="lora")


def test_every_field_has_help_and_a_flag_in_train_help(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for job_field_ in job_fields():
        assert job_field_.option.help, job_field_.name
        shown = job_field_.option.metavar if job_field_.option.positional else job_field_.flag
        assert shown in text, job_field_.name


def test_preset_choices_are_enforced_and_device_takes_any_name(capsys):
    with pytest.raises(SystemExit):
        _parse(["s.sampeft.zarr", "--model", "demo", "--preset", "no_such_preset"])
    assert "invalid choice" in capsys.readouterr().err
    assert (
        _parse(["s.sampeft.zarr", "--model", "demo", "--preset", "lora", "--device", "cuda:3"]).device == "cuda:3"
    )


def test_the_widget_fields_are_the_labelled_ones_in_their_order():
    shown = [f.name for f in job_fields() if f.option.label]
    assert shown == [
        "preset",
        "blocks",
        "rank",
        "lr",
        "steps",
        "recipe",
        "objects_per_image",
        "sub_iterations",
        "validate_every",
        "device",
        "precision",
        "with_decoder",
        "evaluate",
    ]
    assert job_field("evaluate").widget_default is True and job_field("evaluate").default is False
    assert job_field("steps").widget_default is None  # the widget's spin box shows "auto"


def test_numbers_are_written_as_short_as_they_parse_back():
    assert [format_value(v) for v in (1e-5, 0.001, 3e-4, 1e10, 200)] == ["1e-5", "0.001", "0.0003", "1e+10", "200"]
    assert job_field("seed").help.endswith("(default 0)")
    assert "(default" not in job_field("validate_every").help.removesuffix(")")[-12:]  # the recipe's: no number


def test_the_docs_table_of_train_options_is_the_schemas():
    text = (DOCS / "cluster.md").read_text()
    table = re.search(r"<!-- train options: begin -->\n(.*?)\n<!-- train options: end -->", text, re.S)
    assert table is not None, "docs/cluster.md lost its table of train options"
    assert table.group(1) == options_table(), (
        "regenerate it: print(napari_sam_peft.core.training.job.options_table())"
    )
    for job_field_ in job_fields():
        assert job_field_.flag in text or job_field_.option.positional, job_field_.name


def test_the_loop_gets_every_field_it_has_a_setting_for():
    from dataclasses import fields

    from napari_sam_peft.core.sam.architecture import VIT_B
    from napari_sam_peft.core.training.loop import TrainingConfig
    from napari_sam_peft.core.training.plan import job_schedule

    job = TrainingJob(**OTHER_VALUES)
    schedule = job_schedule(job, "lora", VIT_B, 40, "cpu")
    assert (schedule.lr, schedule.steps, schedule.lr_chosen, schedule.steps_chosen) == (
        3.0e-4,
        1234,
        "given",
        "given",
    )
    config = TrainingConfig.of(job, schedule)
    shared = [f.name for f in fields(TrainingConfig) if hasattr(job, f.name)]
    assert {name: getattr(config, name) for name in shared} == {name: getattr(job, name) for name in shared}
    assert set(shared) == {
        "steps", "lr", "objects_per_image", "sub_iterations", "validate_every", "precision", "with_decoder", "seed"
    }  # fmt: skip


def test_a_job_is_frozen_and_its_run_folder_is_a_new_job(tmp_path):
    import dataclasses

    job = TrainingJob(store=tmp_path / "cells.sampeft.zarr", model="demo", preset="late_lora")
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.steps = 10  # type: ignore[misc]
    with pytest.raises(ValueError, match="with_run_folder"):
        _ = job.adapter_path
    named = job.with_run_folder()
    assert job.out is None and named.adapter_path.parent.is_dir() and named.with_run_folder() is named
    assert TrainingJob.from_json(named.to_json()) == named


def test_where_a_job_trains_is_apart_from_what_it_trains():
    from napari_sam_peft.core.training.job import TARGET_FIELDS

    job = TrainingJob(**OTHER_VALUES)
    assert job.on_a_cluster
    here = job.on_this_machine()
    assert not here.on_a_cluster and not any(getattr(here, name) for name in TARGET_FIELDS)
    what = [f.name for f in job_fields() if f.name not in TARGET_FIELDS]
    assert [getattr(here, n) for n in what] == [getattr(job, n) for n in what]  # the same training
    assert "--cluster" not in here.to_argv() and "--tls-key" not in here.to_argv()
