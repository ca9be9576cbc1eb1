"""The base model an export merges into, found from the adapter: a bundled model by its name, a model file
through the run.json beside the adapter; another model's weights are refused, and an unfound one asked for."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.export import base_model
from napari_sam_peft.core.export.base_model import load_adapter_base
from napari_sam_peft.core.peft import Adapter, AdapterMismatchError, attach, spec_from_preset
from napari_sam_peft.core.sam.loading import load_model, save_model
from napari_sam_peft.core.training.runs import RECORD_NAME, RunRecord


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """micro_sam's registry names, without importing micro_sam (a name here would be downloaded)."""
    monkeypatch.setattr(base_model, "known_model_names", lambda: ["vit_b", "vit_b_lm"])


def _adapter(model, path):
    """A late-LoRA adapter of ``model`` saved at ``path``; returns it as an export reads it."""
    handle = attach(model.sam, spec_from_preset("late_lora", model.architecture.depth, blocks="last 1"))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(0.01)
    Adapter.from_attached(handle, model).save(path)
    handle.detach()
    return Adapter.load(path)


def _record(adapter_path, **job):
    RunRecord(adapter=str(adapter_path), job=job).save(adapter_path.parent / RECORD_NAME)


def test_a_bundled_base_model_is_found_by_its_name(tmp_path):
    path = tmp_path / "run" / "adapter.safetensors"
    adapter = _adapter(load_model("demo", device="cpu"), path)
    loaded = load_adapter_base(adapter, path)
    assert loaded.identity == adapter.base_model and loaded.identity.name == "demo"
    assert loaded.device.type == "cpu"
    given = load_adapter_base(adapter, path, model="demo")  # naming it is the same
    assert given.identity == adapter.base_model


def test_a_base_read_from_a_file_is_found_through_the_run_record_beside_the_adapter(tiny_model, tmp_path):
    base_file = save_model(tiny_model, tmp_path / "my_base.safetensors", name="my_base")
    path = tmp_path / "run" / "adapter.safetensors"
    adapter = _adapter(load_model(base_file, device="cpu"), path)

    with pytest.raises(SamPeftError) as asked:  # no run.json: nothing says where the file is
        load_adapter_base(adapter, path)
    message = str(asked.value)
    assert message == (
        f"adapter.safetensors was trained on base model 'my_base' ({adapter.base_model.content_hash[:12]}), "
        "which napari-sam-peft cannot find by itself: give it with --model FILE."
    )

    _record(path, model=str(base_file), steps=10)
    loaded = load_adapter_base(adapter, path)
    assert loaded.identity.content_hash == adapter.base_model.content_hash and loaded.source == str(base_file)
    assert load_adapter_base(adapter, path, model=base_file).source == str(base_file)  # named, it is the same


@pytest.mark.parametrize(
    "record", ["not json at all", '{"job": {"model": "x.pth"}}', '{"adapter": "a.safetensors", "job": {}}']
)
def test_a_run_record_that_names_no_model_counts_as_none(tiny_model, tmp_path, record):
    base_file = save_model(tiny_model, tmp_path / "my_base.safetensors", name="my_base")
    path = tmp_path / "run" / "adapter.safetensors"
    adapter = _adapter(load_model(base_file, device="cpu"), path)
    (path.parent / RECORD_NAME).write_text(record)  # damaged, no adapter key, no model
    with pytest.raises(SamPeftError, match="cannot find by itself: give it with --model FILE"):
        load_adapter_base(adapter, path)


def test_a_model_with_other_weights_is_refused_in_one_message(tiny_model, tmp_path):
    path = tmp_path / "run" / "adapter.safetensors"
    adapter = _adapter(load_model("demo", device="cpu"), path)
    other = save_model(tiny_model, tmp_path / "other.safetensors", name="other")
    with pytest.raises(AdapterMismatchError) as refused:
        load_adapter_base(adapter, path, model=other)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("adapter.safetensors was trained on base model 'demo' (")
    assert adapter.base_model.content_hash[:12] in message and tiny_model.identity.content_hash[:12] in message
    assert str(other) in message and "leave out --model to use the adapter's own base model" in message


def test_a_known_name_with_other_weights_falls_back_to_the_run_records_file(tiny_model, tmp_path):
    """A model saved under a bundled name ('demo') but with its own weights: the bundled one is tried and
    refused, then the file the run trained on is found."""
    base_file = save_model(tiny_model, tmp_path / "my_demo.safetensors", name="demo")
    path = tmp_path / "run" / "adapter.safetensors"
    adapter = _adapter(load_model(base_file, device="cpu"), path)
    assert adapter.base_model.name == "demo"

    with pytest.raises(SamPeftError, match=r"cannot find by itself \('demo' has other weights\): give it with"):
        load_adapter_base(adapter, path)
    _record(path, model=str(base_file))
    assert load_adapter_base(adapter, path).source == str(base_file)


def test_without_micro_sam_a_registry_name_is_unknown_and_the_file_is_asked_for(tiny_model, tmp_path, monkeypatch):
    def broken():
        raise ImportError("No module named 'micro_sam'")

    monkeypatch.setattr(base_model, "known_model_names", broken)
    base_file = save_model(tiny_model, tmp_path / "vit_b.safetensors", name="vit_b")
    path = tmp_path / "run" / "adapter.safetensors"
    adapter = _adapter(load_model(base_file, device="cpu"), path)
    with pytest.raises(SamPeftError, match="base model 'vit_b' .* give it with --model FILE"):
        load_adapter_base(adapter, path)  # nothing downloaded: 'vit_b' is not tried as a name
