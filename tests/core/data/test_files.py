"""Reading images and label images from tif, png and zarr, and the errors for what cannot be read."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_sam_peft.core.data.files import UnreadableFileError, read_array

ARRAY = (np.arange(48, dtype=np.uint8).reshape(6, 8)) * 5


def _write_tif(path):
    import tifffile

    tifffile.imwrite(path, ARRAY)


def _write_png(path):
    import imageio.v3 as iio

    iio.imwrite(path, ARRAY)


def _write_zarr(path):
    zarr.open_array(str(path), mode="w", shape=ARRAY.shape, dtype=ARRAY.dtype)[...] = ARRAY


@pytest.mark.parametrize(
    ("name", "write"), [("a.tif", _write_tif), ("a.png", _write_png), ("a.zarr", _write_zarr)]
)
def test_each_format_reads_back_the_same_array(tmp_path, name, write):
    write(tmp_path / name)
    np.testing.assert_array_equal(read_array(tmp_path / name), ARRAY)


def test_what_cannot_be_read_is_a_clear_error(tmp_path):
    with pytest.raises(UnreadableFileError, match="No file at"):
        read_array(tmp_path / "missing.tif")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(UnreadableFileError, match="Cannot read bad.png as an image"):
        read_array(tmp_path / "bad.png")
    group = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    group.create_array("a", shape=(2, 2), dtype="u1")
    group.create_array("b", shape=(2, 2), dtype="u1")
    with pytest.raises(UnreadableFileError, match="group with 2 arrays"):
        read_array(tmp_path / "two.zarr")
