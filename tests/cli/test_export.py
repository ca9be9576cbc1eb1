"""``napari-sam-peft export`` without ``--model`` (the adapter names its base), its refusals, and a failure
inside bioimageio's libraries as one line: in-process, so a test can break bioimageio on purpose."""

from __future__ import annotations

import pydantic
import pytest
import torch

from napari_sam_peft.cli import main
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset
from napari_sam_peft.core.sam.loading import load_model, save_model
from napari_sam_peft.core.training.runs import RECORD_NAME, RunRecord

pytestmark = pytest.mark.export


def _adapter(model, path):
    """A late-LoRA adapter of ``model`` whose tensors differ from the base (no training needed)."""
    handle = attach(model.sam, spec_from_preset("late_lora", model.architecture.depth, blocks="last 1"))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(0.01)
    saved = Adapter.from_attached(handle, model).save(path)
    handle.detach()
    return saved


@pytest.fixture(scope="module")
def demo_adapter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    store = AnnotationStore.create(folder / "cells.sampeft.zarr")
    sample = make_sample("cells", seed=1)
    store.add_labels(sample.image, sample.labels, split="val")
    return _adapter(load_model("demo", device="cpu"), folder / "run" / "adapter.safetensors"), store.path


def _export(capsys, *args):
    code = main(["export", *map(str, args)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_export_without_model_merges_into_the_adapters_own_base(demo_adapter, tmp_path, capsys):
    adapter, _ = demo_adapter
    code, lines = _export(capsys, adapter, "--out", tmp_path / "merged.pth")
    assert code == 0, lines
    assert lines[-1].startswith("wrote ") and "demo + late_lora" in lines[-1]
    merged = torch.load(tmp_path / "merged.pth", weights_only=True)
    base = load_model("demo", device="cpu").sam.state_dict()
    assert merged.keys() == base.keys() and any(not torch.equal(merged[k], base[k]) for k in base)


def test_a_model_other_than_the_adapters_base_is_refused_in_one_line(demo_adapter, tmp_path, tiny_model, capsys):
    adapter, _ = demo_adapter
    other = save_model(tiny_model, tmp_path / "other.safetensors", name="other")
    code, lines = _export(capsys, adapter, "--model", other, "--out", tmp_path / "merged.pth")
    assert code == 2 and len(lines) == 1
    assert "was trained on base model 'demo'" in lines[0] and "leave out --model" in lines[0]
    assert not (tmp_path / "merged.pth").exists()


def test_a_base_read_from_a_file_is_found_through_the_run_record_else_asked_for(tmp_path, capsys):
    base_file = save_model(load_model("demo", device="cpu"), tmp_path / "my_base.safetensors", name="my_base")
    adapter = _adapter(load_model(base_file, device="cpu"), tmp_path / "run" / "adapter.safetensors")

    code, lines = _export(capsys, adapter, "--out", tmp_path / "a.pth")  # no run.json beside the adapter
    assert code == 2 and len(lines) == 1
    assert "'my_base'" in lines[0] and "give it with --model FILE" in lines[0]

    RunRecord(adapter=str(adapter), job={"model": str(base_file)}).save(adapter.parent / RECORD_NAME)
    code, lines = _export(capsys, adapter, "--out", tmp_path / "b.pth")
    assert code == 0, lines
    assert (tmp_path / "b.pth").is_file()


def _invalid(*args, **kwargs):
    pydantic.TypeAdapter(int).validate_python("not a number")  # raises pydantic's ValidationError


def _crash(*args, **kwargs):
    raise RuntimeError("the test runner crashed")


@pytest.mark.parametrize(
    ("target", "replacement", "reason"),
    [
        ("bioimageio.spec.model.v0_5.ModelDescr", _invalid, "ValidationError: Input should be a valid integer"),
        ("bioimageio.core.test_model", _crash, "RuntimeError: the test runner crashed"),
    ],
)
def test_a_failure_inside_bioimageio_is_one_line_exit_2_and_nothing_written(
    demo_adapter, tmp_path, monkeypatch, capsys, target, replacement, reason
):
    adapter, store = demo_adapter
    monkeypatch.setattr(target, replacement)
    package = tmp_path / "model.zip"
    code, lines = _export(capsys, adapter, "--bioimageio", package, "--store", store)
    assert code == 2
    assert [line for line in lines if not line.startswith("writing and testing")] == [lines[-1]]
    assert lines[-1].startswith("napari-sam-peft export: Writing the bioimage.io package failed")
    assert reason in lines[-1] and "bioimageio.spec " in lines[-1] and "pydantic " in lines[-1]
    assert "Nothing was written" in lines[-1] and "--out MERGED.pth" in lines[-1]
    assert not package.exists() and list(tmp_path.iterdir()) == []
