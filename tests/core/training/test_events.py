"""A training run's events: one versioned dataclass each, written and read back as JSON lines."""

from __future__ import annotations

import json
import math

import pytest

from napari_sam_peft.core.training.events import (
    EVENT_TYPES,
    Baseline,
    Best,
    Error,
    Evaluating,
    Evaluation,
    Finished,
    Prepared,
    Progress,
    Started,
    event_from_json,
)

SCORES = {"point": 0.5, "box": 0.625, "i_p": 0.75, "i_b": 0.875, "n_objects": 3}

#: one event of every kind, as a run reports it
EXAMPLES = [
    Started(
        run_dir="/data/cells.adapters/run",
        path="/data/cells.adapters/run/adapter.safetensors",
        preset="late_lora",
        method="late_lora (lora, blocks 6-11)",
        trainable_params=147_456,
        validation="held out automatically",
        measured_on="held out automatically: 2 of 9 objects of 1 training image",
        train_images=1,
        train_objects=7,
        val_images=1,
        val_objects=2,
        held_out_images=[],
        held_out_objects=["obj-3", "obj-7"],
        device="cpu",
        steps=200,
        world_size=1,
    ),
    Prepared(seconds=1.25, first_trained_stage=6, computed=1, reused=2),
    Baseline(score=0.5),
    Progress(step=3, steps=200, loss=0.5, val_score=None, best_score=0.25, its_per_second=1.5, eta_seconds=131.0),
    Best(path="/data/adapter.safetensors", step=25, score=0.75),
    Evaluating(images=2, validation="validation split", measured_on="the store's validation split"),
    Evaluation(
        validation="validation split",
        measured_on="the store's validation split: 2 images, 3 objects",
        images=2,
        objects=3,
        base=SCORES,
        adapter={**SCORES, "box": 0.75},
    ),
    Finished(
        status="completed", path="/data/adapter.safetensors", best_score=None, validation="x", measured_on="y"
    ),
    Error(kind="out_of_memory", message="Training ran out of memory on cuda."),
]


def test_there_is_an_example_of_every_event():
    assert {type(event) for event in EXAMPLES} == set(EVENT_TYPES.values())


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda event: event.event)
def test_every_event_round_trips_through_a_json_line(event):
    line = event.to_json()
    assert "\n" not in line
    assert event_from_json(line) == event


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda event: event.event)
def test_the_wire_names_the_event_its_version_and_its_fields(event):
    values = json.loads(event.to_json())
    assert values["event"] == event.event and values["version"] == type(event).version == 1
    assert set(values) - {"event", "version"} == set(event.values())


def test_the_terminal_events_are_finished_and_error():
    assert {type(event) for event in EXAMPLES if event.terminal} == {Finished, Error}


def test_an_unknown_eta_is_null_on_the_wire_and_infinite_again_when_read():
    event = Progress(
        step=1, steps=2, loss=1.0, val_score=None, best_score=None, its_per_second=0.0, eta_seconds=math.inf
    )
    assert json.loads(event.to_json())["eta_seconds"] is None
    assert event_from_json(event.to_json()).eta_seconds == math.inf


def test_lines_that_are_not_events_and_unknown_events_are_ignored():
    assert event_from_json("Downloading weights...") is None
    assert event_from_json("[1, 2]") is None
    assert event_from_json('{"event": "coffee_break", "version": 1, "minutes": 5}') is None


def test_unknown_fields_are_ignored():
    values = {**json.loads(EXAMPLES[3].to_json()), "note": "from a later version"}
    assert event_from_json(json.dumps(values)) == EXAMPLES[3]


def test_an_event_of_a_newer_version_that_cannot_be_read_is_a_clear_error():
    line = json.dumps({"event": "progress", "version": 2, "step": 1, "iteration_loss": 0.5})
    event = event_from_json(line)
    assert isinstance(event, Error) and event.kind == "crash"
    assert "version 2" in event.message and "newer" in event.message and "'progress'" in event.message


def test_a_damaged_event_is_a_clear_error():
    event = event_from_json(json.dumps({"event": "best", "version": 1, "path": "a.safetensors"}))
    assert isinstance(event, Error) and "'best'" in event.message and "cannot read" in event.message
