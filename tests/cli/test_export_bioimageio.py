"""``export --bioimageio``: a continued adapter as a bioimage.io package that bioimage.io's own test passes."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest
import yaml

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.peft import Adapter
from napari_sam_peft.core.training.job import TrainingJob
from napari_sam_peft.core.training.run import run_job

pytestmark = [pytest.mark.slow, pytest.mark.export]  # trains twice, then writes and tests a package


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "napari_sam_peft.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Round one, then a continuation of it after one more image: (store, first adapter, second adapter);
    trained once for the module's tests, which only read them."""
    store = AnnotationStore.create(tmp_path_factory.mktemp("chain") / "cells.sampeft.zarr")
    for seed, split in ((1, "train"), (2, "val")):
        sample = make_sample("cells", seed=seed)
        store.add_labels(sample.image, sample.labels, split=split)
    common = dict(store=store.path, model="demo", preset="late_lora", blocks="last 1", steps=2, validate_every=2,
                  objects_per_image=4, with_decoder=True)  # fmt: skip
    first = run_job(TrainingJob(**common), lambda e: None).adapter
    sample = make_sample("cells", seed=3)
    store.add_labels(sample.image, sample.labels, split="train")
    second = run_job(TrainingJob(**common, from_adapter=first), lambda e: None).adapter
    return store, first, second


def test_a_continued_adapter_exports_as_a_bioimageio_package_that_passes_its_test(chain, tmp_path):
    import bioimageio.core

    store, first, second = chain
    package = tmp_path / "cells_model.zip"
    # no --model: the adapter records its base model
    result = _cli("export", second, "--bioimageio", str(package), "--author", "A. Biologist")
    assert result.returncode == 0, result.stderr
    assert "bioimageio.core's test: passed" in result.stderr
    # bioimage.io's own test, again, on the file as a user downloads it (offline)
    summary = bioimageio.core.test_model(package, devices=["cpu"])
    assert summary.status == "passed", summary.display() if hasattr(summary, "display") else summary

    with zipfile.ZipFile(package) as archive:
        rdf = yaml.safe_load(archive.read("rdf.yaml"))
        readme = archive.read("README.md").decode()
    parent, child = Adapter.load(first), Adapter.load(second)
    lineage = rdf["config"]["napari_sam_peft"]
    assert lineage["adapter"] == child.identity and lineage["parents"] == [parent.identity]
    assert f"continued from {parent.identity[:12]}" in rdf["description"]
    assert parent.identity[:12] in readme and "arXiv:2502.00418" in readme
    assert any("2502.00418" in entry.get("url", "") for entry in rdf["cite"])
    assert rdf["authors"] == [{"name": "A. Biologist"}] and rdf["covers"]
    assert {t["id"] for t in rdf["inputs"]} >= {"image", "box_prompts", "point_prompts", "mask_prompts"}

    # called with the image alone, the packaged model segments automatically with its instance decoder
    description = bioimageio.core.load_model_description(package)
    image = np.load(_extract(package, "test_input_image.npy", tmp_path))
    import xarray
    from bioimageio.core.digest_spec import create_sample_for_model

    with bioimageio.core.create_prediction_pipeline(description, devices=["cpu"]) as pipeline:
        sample = create_sample_for_model(
            model=description, inputs={"image": xarray.DataArray(image, dims=("batch", "channel", "y", "x"))}
        )
        masks = pipeline.predict_sample_without_blocking(sample).members["masks"].data
    assert masks.ndim == 5 and masks.shape[-2:] == image.shape[-2:]


def _extract(package, name, folder):
    with zipfile.ZipFile(package) as archive:
        return archive.extract(name, folder)


def test_bad_exports_are_one_line_and_write_nothing(chain, tmp_path):
    store, first, _ = chain
    for args, message in (
        (["--bioimageio", str(tmp_path / "model.tar")], "must end in .zip"),
        ([], "Say what to write"),
        (["--bioimageio", str(tmp_path / "model.zip"), "--store", str(tmp_path / "nowhere.zarr")], "--store"),
    ):
        result = _cli("export", first, "--model", "demo", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("model.*"))
