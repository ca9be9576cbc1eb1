"""Every call of a private micro_sam function, in one place.

micro_sam has no public API for these four steps, and doing them differently would make our
files or tensors differ from micro_sam's own. Checked against micro_sam 1.8.14 (the version
pinned by the tests' environment); when micro_sam changes one of them, this module is the only
place to adapt.

- ``_to_image``: turns a greyscale, two-channel or RGB image into the 3-channel uint8 array
  (each channel min-max scaled to 0-255) that micro_sam's predictor embeds. Training must
  preprocess exactly as the annotator does, or the adapter learns on inputs it never sees.
- ``_load_checkpoint``: reads micro_sam's own registry files, some of which pickle training
  metadata beside the weights. Used only for files whose hash micro_sam's downloader checked.
- ``_create_dataset_with_data`` and ``_write_embedding_signature``: write an embedding entry
  (features plus the signature attributes micro_sam checks on reading) in micro_sam's zarr
  format, zarr 2 and 3 alike, so entries computed from a kept stage input are served by
  ``precompute_image_embeddings`` like those it wrote itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_image(image: np.ndarray) -> np.ndarray:
    """The (H, W, 3) uint8 array micro_sam embeds for a 2D image (greyscale, 2-channel or RGB), each
    channel min-max scaled to 0-255."""
    from micro_sam.util import _to_image

    return _to_image(image)


def load_checkpoint(path: str) -> object:
    """What a micro_sam registry file holds, as ``torch.load`` gives it (unpickles its metadata:
    trusted files only); ``loading.sam_state_from`` unwraps the SAM state dict."""
    from micro_sam.util import _load_checkpoint

    raw, _ = _load_checkpoint(path)
    return raw


def write_embedding_entry(
    group: Any,
    features: np.ndarray,
    image: np.ndarray,
    predictor: Any,
    input_size: list[int],
    original_size: list[int],
) -> None:
    """Write whole-image ``features`` and micro_sam's embedding signature into a zarr ``group``."""
    from micro_sam.util import _create_dataset_with_data, _write_embedding_signature

    _create_dataset_with_data(group, "features", data=features)
    _write_embedding_signature(
        group,
        image,
        predictor,
        tile_shape=None,
        halo=None,
        input_size=input_size,
        original_size=original_size,
    )
