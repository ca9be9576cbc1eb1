"""Reading images and label images from tif, png (and other imageio formats) and zarr."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SamPeftError


class UnreadableFileError(SamPeftError):
    """A file that does not exist or is not an image this package can read."""


def read_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a 2D image or label image from ``.tif``/``.tiff``, ``.png``/``.jpg``, or a zarr array.

    A zarr path may point at an array, or at a group holding exactly one array.
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableFileError(f"No file at {path}.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return np.asarray(tifffile.imread(path))
        if suffix == ".zarr" or (path / "zarr.json").exists() or (path / ".zarray").exists():
            import zarr

            node = zarr.open(str(path), mode="r")
            if isinstance(node, zarr.Group):
                arrays = list(node.array_keys())
                if len(arrays) != 1:
                    raise UnreadableFileError(
                        f"{path} is a zarr group with {len(arrays)} arrays; point at one of them: "
                        + ", ".join(f"{path}/{a}" for a in arrays[:5])
                    )
                node = node[arrays[0]]
            assert isinstance(node, zarr.Array)
            return np.asarray(node[...])
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except UnreadableFileError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure means "cannot read"
        raise UnreadableFileError(f"Cannot read {path.name} as an image ({err}).") from None
