"""Checking volumes and reading them one slice at a time.

A volume is (Z, Y, X) greyscale or (Z, Y, X, 3) colour (napari's ``layer.rgb``), held as numpy,
a memory-mapped tif, zarr or dask array. Nothing here loads a volume whole: the checks read
its shape and dtype, and :func:`volume_slice` reads one plane. Each slice is normalised on its
own by micro_sam (as its ``annotator_3d`` does), so a blank slice is allowed inside a volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..annotation.images import MIN_SIDE, InvalidImageError


class InvalidVolumeError(InvalidImageError):
    """A stack SAM cannot segment slice by slice."""


@dataclass(frozen=True)
class VolumeShape:
    """The spatial size of a volume and whether it has a colour axis last."""

    n_slices: int
    height: int
    width: int
    rgb: bool

    @property
    def slice_shape(self) -> tuple[int, int]:
        """(Y, X) of one slice."""
        return (self.height, self.width)

    @property
    def labels_shape(self) -> tuple[int, int, int]:
        """(Z, Y, X): the shape of the volume's instance labels."""
        return (self.n_slices, self.height, self.width)


def _colour_last(shape: tuple[int, ...], rgb: bool | None) -> bool:
    return shape[-1] in (3, 4) and rgb is not False


def is_volume(data: Any, rgb: bool | None = None) -> bool:
    """Whether ``data`` is a stack of slices rather than one 2D (or RGB) image.

    (Z, Y, X) with a last axis other than 3 or 4 (or ``rgb`` False), and (Z, Y, X, 3). Reads only
    the shape.
    """
    shape = tuple(int(n) for n in np.shape(data))
    if len(shape) == 3:
        return not _colour_last(shape, rgb)
    return len(shape) >= 4


def check_volume(data: Any, rgb: bool | None = None) -> VolumeShape:
    """Validate a volume's shape and dtype without reading its pixels.

    Raises
    ------
    InvalidVolumeError
        A 4D (or more) image, RGBA, a single slice, slices smaller than SAM takes, or no numbers.
    """
    shape = tuple(int(n) for n in np.shape(data))
    dtype = np.dtype(data.dtype) if hasattr(data, "dtype") else np.asarray(data).dtype
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
        raise InvalidVolumeError(f"Volumes of type {dtype} cannot be segmented; convert it to numbers first.")
    colour = len(shape) == 4 and _colour_last(shape, rgb)
    if colour and shape[-1] == 4:
        raise InvalidVolumeError(
            f"The volume has 4 channels (shape {shape}, RGBA?). SAM takes greyscale or RGB: drop the "
            "alpha channel (data[..., :3]) or pick one channel."
        )
    if len(shape) >= 4 and not colour:
        raise InvalidVolumeError(
            f"The image has {len(shape)} dimensions (shape {shape}); the annotator takes 2D images and 3D volumes "
            "(Z, Y, X). For a time series of volumes or channels first, take one volume or one channel into "
            "its own layer."
        )
    if len(shape) < 3:
        raise InvalidVolumeError(f"The image has shape {shape}: a volume is (Z, Y, X).")
    n_slices, height, width = shape[:3]
    if n_slices < 2:
        raise InvalidVolumeError(f"The volume has {n_slices} slice(s) (shape {shape}): open it as a 2D image.")
    if min(height, width) < MIN_SIDE:
        raise InvalidVolumeError(
            f"The slices are {height} x {width} pixels; SAM needs at least {MIN_SIDE} x {MIN_SIDE}."
        )
    return VolumeShape(n_slices, height, width, colour)


def volume_slice(data: Any, z: int) -> np.ndarray:
    """Slice ``z`` of a volume as numpy (only that plane is read).

    Raises
    ------
    InvalidVolumeError
        An index outside the volume, or NaN or infinite values in the slice.
    """
    n_slices = int(np.shape(data)[0])
    if not 0 <= z < n_slices:
        raise InvalidVolumeError(f"Slice {z} is outside the volume (slices 0 to {n_slices - 1}).")
    plane = np.asarray(data[z])
    if plane.dtype == bool:
        plane = plane.astype(np.uint8)
    if np.issubdtype(plane.dtype, np.floating) and not np.isfinite(plane).all():
        bad = int((~np.isfinite(plane)).sum())
        raise InvalidVolumeError(
            f"Slice {z} has {bad} NaN or infinite value(s). Replace them (e.g. np.nan_to_num) and try again."
        )
    return plane


def slices_outward(current: int, n_slices: int) -> list[int]:
    """Every slice index, ``current`` first, then its neighbours alternately above and below."""
    current = min(max(int(current), 0), n_slices - 1)
    order = [current]
    for distance in range(1, n_slices):
        order.extend(z for z in (current + distance, current - distance) if 0 <= z < n_slices)
    return order
