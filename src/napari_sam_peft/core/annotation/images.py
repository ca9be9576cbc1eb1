"""Checking and describing the images users hand to SAM.

SAM takes 2D greyscale or RGB images; micro_sam normalises any dtype to 0..255 per
channel (greyscale is repeated into 3 channels, so (H, W) and the same image stacked as 3
identical channels give the same masks). An RGB image is (H, W, 3), colour last, as napari
holds it (``layer.rgb``); everything after ``check_image`` treats it as one 2D image. What
SAM cannot take as one image (empty, tiny, NaN, 4 channels, stacks) is refused here with a message
that says what to do, before any model runs.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import SamPeftError

MIN_SIDE = 8


class InvalidImageError(SamPeftError):
    """An image SAM cannot segment."""


class UnsupportedDimensionsError(InvalidImageError):
    """A stack of planes where one 2D image is expected (volumes go through :mod:`..volume`)."""


def check_image(data: np.ndarray, rgb: bool | None = None) -> np.ndarray:
    """Validate an image for SAM and return it as a numpy array (2D, or 2D x 3 channels).

    Parameters
    ----------
    data
        The image, any integer, float or bool dtype.
    rgb
        Whether a trailing axis of size 3 is colour (napari's ``layer.rgb``). ``None`` guesses:
        a last axis of 3 is colour.

    Raises
    ------
    InvalidImageError, UnsupportedDimensionsError
        With what to do about it.
    """
    image = np.asarray(data)
    if image.size == 0:
        raise InvalidImageError(f"The image is empty (shape {image.shape}). Pick an image layer that holds data.")
    if image.dtype == bool:
        image = image.astype(np.uint8)
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise InvalidImageError(f"Images of type {image.dtype} cannot be segmented; convert it to numbers first.")
    is_colour = image.ndim == 3 and image.shape[-1] in (3, 4) and rgb is not False
    if image.ndim == 3 and image.shape[-1] == 4 and is_colour:
        raise InvalidImageError(
            "The image has 4 channels (RGBA?). SAM takes greyscale or RGB: drop the alpha channel "
            "(e.g. layer.data[..., :3]) or pick one channel."
        )
    if image.ndim >= 3 and not is_colour:
        raise UnsupportedDimensionsError(
            f"This is a stack of planes (shape {image.shape}), not one 2D image: pick it in the Segment "
            "widget's image list to annotate it as a volume, slice by slice, or take one plane into its own layer."
        )
    if image.ndim < 2:
        raise InvalidImageError(f"The image has shape {image.shape}; SAM needs a 2D image.")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InvalidImageError(
            f"The image is {height} x {width} pixels; SAM needs at least {MIN_SIDE} x {MIN_SIDE}."
        )
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise InvalidImageError(
            f"The image has {bad} NaN or infinite value(s). Replace them (e.g. np.nan_to_num) and try again."
        )
    if image.min() == image.max():
        raise InvalidImageError(
            f"The image is blank (every pixel is {image.flat[0]}): nothing to segment. Pick another image."
        )
    if image.ndim == 3 and (image.min(axis=(0, 1)) == image.max(axis=(0, 1))).all():
        # SAM normalises each channel on its own: a uniform colour becomes a black image
        raise InvalidImageError(
            f"The image is one uniform colour ({image[0, 0].tolist()}): nothing to segment. Pick another image."
        )
    return image


def image_content_hash(image: np.ndarray) -> str:
    """SHA-256 of an image's shape, dtype and bytes: the embedding cache's image key."""
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256()
    digest.update(f"{array.shape}|{array.dtype.str}|".encode())
    digest.update(array.data.cast("B"))
    return digest.hexdigest()
