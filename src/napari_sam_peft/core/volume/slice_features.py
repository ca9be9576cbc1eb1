"""A volume's image embeddings, one slice at a time, in the form micro_sam's 3D functions read.

micro_sam's propagation and 3D segmentation take ``{"features": F, "input_size", "original_size"}``
and read ``F[z]`` for slice ``z`` (``micro_sam.util.set_precomputed``). :class:`VolumeFeatures`
is such an ``F`` filled slice by slice as the embeddings arrive (from the per-slice entries of the
embedding cache), so the slice on screen can be prompted before the rest of the volume is embedded.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..errors import SamPeftError


class SliceNotReadyError(SamPeftError):
    """A slice whose embeddings are not computed yet."""

    def __init__(self, z: int) -> None:
        super().__init__(f"Slice {z} is not embedded yet; it is queued first, try again in a moment.")
        self.z = z


class VolumeFeatures:
    """Per-slice image embeddings of one volume (each (1, C, h, w) float32), indexable as ``features[z]``."""

    ndim = 5  # what micro_sam checks to tell 3D embeddings from 2D ones

    def __init__(self, n_slices: int) -> None:
        self.n_slices = int(n_slices)
        self._slices: dict[int, Any] = {}  # numpy, or an on-disk (zarr) array read when indexed
        self._sizes: tuple[tuple[int, int], tuple[int, int]] | None = None
        self._lock = threading.Lock()

    def put(self, z: int, embeddings: dict) -> None:
        """Record slice ``z``'s embeddings (micro_sam's 2D embeddings dict of that slice).

        Features given as an on-disk array (a cache entry's zarr ``features``) stay on disk and are read
        when the slice is used, so a long volume's embeddings do not accumulate in memory.
        """
        features = embeddings["features"]
        if isinstance(features, np.ndarray) or not hasattr(features, "shape"):
            features = np.asarray(features, dtype=np.float32)
            if features.ndim == 3:
                features = features[None]
        sizes = (tuple(embeddings["input_size"]), tuple(embeddings["original_size"]))
        with self._lock:
            self._slices[int(z)] = features
            self._sizes = sizes

    def ready(self, z: int) -> bool:
        """Whether slice ``z`` is embedded."""
        return int(z) in self._slices

    @property
    def count(self) -> int:
        """How many slices are embedded."""
        return len(self._slices)

    @property
    def complete(self) -> bool:
        """Whether every slice is embedded."""
        return len(self._slices) == self.n_slices

    def missing(self, order: list[int] | None = None) -> list[int]:
        """The slices not embedded yet (in ``order`` when given)."""
        return [z for z in (order if order is not None else range(self.n_slices)) if z not in self._slices]

    def __len__(self) -> int:
        return self.n_slices

    def __getitem__(self, z: int) -> np.ndarray:
        features = self._slices.get(int(z))
        if features is None:
            raise SliceNotReadyError(int(z))
        if not isinstance(features, np.ndarray):  # on disk: read this slice now
            features = np.asarray(features[...], dtype=np.float32).reshape(1, *features.shape[-3:])
        return features

    def slice_embeddings(self, z: int) -> dict:
        """micro_sam's 2D embeddings dict of slice ``z`` (for the 2D prompt and automatic functions)."""
        features = self[z]
        assert self._sizes is not None
        return {"features": features, "input_size": self._sizes[0], "original_size": self._sizes[1]}

    def as_micro_sam(self) -> dict:
        """The volume's embeddings as micro_sam's 3D functions take them (every slice read lazily).

        Raises
        ------
        SliceNotReadyError
            When no slice is embedded yet.
        """
        if self._sizes is None:
            raise SliceNotReadyError(0)
        return {"features": self, "input_size": self._sizes[0], "original_size": self._sizes[1]}
