"""The command line on volumes: store add a 3D tif with 3D labels, train, evaluate with the 3D scores."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_sam_peft.core.data.sample_volume import make_volume
from napari_sam_peft.core.data.store import AnnotationStore
from tests.cli.test_commands import _cli

pytestmark = [pytest.mark.slow, pytest.mark.volume]  # each test runs the CLI in a new process


def _add(store, image, labels, *extra):
    return _cli("store", "add", str(store), "--image", str(image), "--labels", str(labels), *extra)


def test_store_add_train_and_evaluate_a_volume(tmp_path):
    store = tmp_path / "volumes.sampeft.zarr"
    for seed, split in ((0, "train"), (1, "val")):
        sample = make_volume(seed=seed, shape=(8, 128, 128))  # small: evaluate runs AMG on every slice
        tifffile.imwrite(tmp_path / f"volume{seed}.tif", sample.image)
        tifffile.imwrite(tmp_path / f"labels{seed}.tif", sample.labels)
        result = _add(store, tmp_path / f"volume{seed}.tif", tmp_path / f"labels{seed}.tif", "--split", split)
        assert result.returncode == 0, result.stderr
        assert "volume of 8 slices" in result.stdout
    info = json.loads(_cli("store", "info", str(store), "--json").stdout)
    assert info["volumes"] == 2 and info["images"] == 2

    adapter = tmp_path / "volume.safetensors"
    args = ("--model", "demo", "--preset", "late_lora", "--steps", "2", "--validate-every", "2", "--device", "cpu")
    # with the instance decoder, evaluate segments automatically by AIS, not by mask generation on every slice
    result = _cli("train", str(store), *args, "--objects-per-image", "2", "--out", str(adapter), "--with-decoder")
    assert result.returncode == 0, result.stderr
    record = json.loads((adapter.parent / "run.json").read_text())
    assert record["validation"]["validation"] == "validation split"

    args = ("evaluate", str(store), "--model", "demo", "--adapter", str(adapter), "--iterations", "1", "--json")
    # a hang guard, not a speed bound
    result = subprocess.run([sys.executable, "-m", "napari_sam_peft.cli", *args], capture_output=True, text=True,
                            timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert {"point", "box", "i_p", "i_b", "ais", "volume", "volume_ais"} <= set(scores)
    assert scores["n_volumes"] == 1 and 0 < scores["volume"] <= 1 and 0 <= scores["volume_ais"] <= 1


@pytest.mark.parametrize(
    ("image_shape", "labels_shape", "message"),
    [
        ((12, 64, 64), (12, 32, 64), "must match (Z, Y, X)"),
        ((2, 12, 64, 64), (2, 12, 64), "time series of volumes"),
    ],
)
def test_a_bad_volume_exits_2_with_one_line_and_creates_no_store(tmp_path, image_shape, labels_shape, message):
    tifffile.imwrite(tmp_path / "image.tif", np.ones(image_shape, np.uint8))
    labels = np.zeros(labels_shape, np.uint16)
    labels[..., 2:9, 2:9] = 1
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    store = tmp_path / "s.sampeft.zarr"
    result = _add(store, tmp_path / "image.tif", tmp_path / "labels.tif")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not store.exists()


def test_a_volume_is_added_from_a_memory_map_slice_by_slice(tmp_path):
    """An uncompressed tif is memory-mapped, never loaded whole (a volume larger than memory fits)."""
    from napari_sam_peft.core.data.files import open_lazy

    sample = make_volume(seed=2, shape=(10, 96, 96))
    tifffile.imwrite(tmp_path / "volume.tif", sample.image)
    lazy = open_lazy(tmp_path / "volume.tif")
    assert isinstance(lazy, np.memmap)
    store = AnnotationStore.create(tmp_path / "s.sampeft.zarr")
    image_id, _ = store.add_labels(lazy, sample.labels)
    np.testing.assert_array_equal(store.lazy_image(image_id)[4], sample.image[4])
