"""Each bad input a new user met gets its own true one-line message (exit status 2), not another's."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_sam_peft.cli import main
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.session.committed_objects import CommittedObjects


@pytest.fixture
def files(tmp_path):
    """A 4D tif with its labels, a text file, a regular file named like a store, a good image, a store."""
    tifffile.imwrite(tmp_path / "four_d.tif", np.zeros((2, 3, 64, 64), np.uint16))
    tifffile.imwrite(tmp_path / "four_d_labels.tif", np.ones((2, 3, 64, 64), np.uint16))
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "file.sampeft.zarr").write_text("a regular file\n")
    sample = make_sample("cells", seed=1)
    tifffile.imwrite(tmp_path / "image.tif", sample.image)
    tifffile.imwrite(tmp_path / "labels.tif", sample.labels)
    store = AnnotationStore.create(tmp_path / "cells.sampeft.zarr")
    store.add_labels(sample.image, sample.labels, split="train")
    return tmp_path


CASES = [
    (
        "a 4D tif",
        ["store", "add", "{d}/new.sampeft.zarr", "--image", "{d}/four_d.tif", "--labels", "{d}/four_d_labels.tif"],
        "Cannot store a volume of shape (2, 3, 64, 64): the store takes (Z, Y, X) or (Z, Y, X, 3) volumes; for a "
        "time series of volumes or channels first, add one volume or one channel at a time.",
    ),
    (
        "store add on a regular file",
        ["store", "add", "{d}/file.sampeft.zarr", "--image", "{d}/image.tif", "--labels", "{d}/labels.tif"],
        "file.sampeft.zarr is a file, not an annotation store (a folder ending in .sampeft.zarr)",
    ),
    (
        "store info on a regular file",
        ["store", "info", "{d}/file.sampeft.zarr"],
        "file.sampeft.zarr is a file, not an annotation store",
    ),
    (
        "evaluate with a misspelt model",
        ["evaluate", "{d}/cells.sampeft.zarr", "--model", "vit_bb"],
        "Unknown model 'vit_bb'. Choose 'demo', 'lite_medsam', a checkpoint file, or one of: vit_b,",
    ),
    (
        "a text file as the image",
        ["store", "add", "{d}/new.sampeft.zarr", "--image", "{d}/notes.txt", "--labels", "{d}/labels.tif"],
        "Cannot read notes.txt as an image (",
    ),
]


@pytest.mark.parametrize(("case", "args", "message"), CASES, ids=[case for case, _, _ in CASES])
def test_each_bad_input_has_its_own_one_line_message(files, capsys, case, args, message):
    code = main([arg.format(d=files) for arg in args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert message in lines[0], lines[0]
    assert "``" not in lines[0] and "No annotation store at" not in lines[0]
    assert not (files / "new.sampeft.zarr").exists()


def test_the_dataset_widgets_store_path_on_a_regular_file_says_it_is_a_file(files):
    objects = CommittedObjects()
    with pytest.raises(SamPeftError, match="is a file, not an annotation store"):
        objects.open_store(files / "file.sampeft.zarr")
    (files / "plain_file").write_text("x")
    with pytest.raises(SamPeftError, match="plain_file is a file: choose a folder for the annotation store"):
        objects.open_store(files / "plain_file")
