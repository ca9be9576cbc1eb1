"""Reading images and label images from tif, png (and other imageio formats) and zarr."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SamPeftError


class UnreadableFileError(SamPeftError):
    """A file that does not exist or is not an image this package can read."""


def read_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a 2D image, a volume or a label image from ``.tif``/``.tiff``, ``.png``/``.jpg``, or a zarr array.

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
        reason = " ".join(str(err).replace("`", "'").replace("''", "'").split())
        raise UnreadableFileError(
            f"Cannot read {path.name} as an image ({reason}). napari-sam-peft reads tif, png, jpg and the other "
            "formats imageio knows, and zarr arrays."
        ) from None


def open_lazy(path: str | os.PathLike[str]) -> Any:
    """An image whose pixels are read only when indexed, where the format allows it.

    An uncompressed tif is memory-mapped and a zarr array stays on disk, so a volume larger than
    memory can be stored slice by slice; other files (compressed tifs, png) are read whole.
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff") and path.exists():
        import tifffile

        try:
            return tifffile.memmap(path, mode="r")
        except (ValueError, OSError):  # compressed or tiled: not mappable
            pass
    if path.exists() and (path.suffix.lower() == ".zarr" or (path / "zarr.json").exists()):
        import zarr

        node = zarr.open(str(path), mode="r")
        if isinstance(node, zarr.Array):
            return node
    return read_array(path)
