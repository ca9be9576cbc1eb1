"""The embedding cache: image embeddings on disk (zarr, micro_sam's format), keyed so that
a changed model or adapter can never be served stale embeddings.

The key is ``image content hash + base-model identity + adapter identity + tiling + precision``
(the encoder's compute precision: an entry made in bfloat16 is never served to a float32 session). Each
entry is one zarr group written by ``micro_sam.util.precompute_image_embeddings`` into a
temporary folder and renamed into place when complete, so a crash never leaves an entry
that looks finished. Reopening an image with the same model and adapter reads the entry
instead of running the encoder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import zarr

from ..atomic import atomic_path
from ..cache_dir import default_cache_dir
from ..sam.internals import tag_predictor_model, write_embedding_entry
from .progress import MicroSamProgress, ProgressCallback

if TYPE_CHECKING:
    from ..sam.loading import LoadedModel

BASE_ADAPTER_KEY = "base"  # the adapter part of the key for the base model alone

#: micro_sam's ``ndim`` for every image we embed. Without it micro_sam takes the array's ndim, so an
#: RGB image (H, W, 3) would be embedded as a stack of H planes of shape (W, 3). ``check_image``
#: guarantees a 2D image, greyscale or with a colour axis last.
IMAGE_NDIM = 2


def tiling_for(
    image_shape: tuple[int, ...], img_size: int
) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """Tile images larger than twice the model's input size; each tile+halo is one model input."""
    if max(image_shape[:2]) <= 2 * img_size:
        return None, None
    halo = img_size // 8
    tile = img_size - 2 * halo
    return (tile, tile), (halo, halo)


def model_key(model: LoadedModel) -> str:
    """The base-model part of an :class:`EmbeddingKey` for a ``LoadedModel``."""
    return f"{model.identity.name}:{model.identity.content_hash}"


def tag_predictor(predictor: Any, model: LoadedModel, adapter_key: str) -> None:
    """Name model and adapter in a micro_sam predictor (its embedding files record them)."""
    predictor.model_type = model.architecture.name
    predictor.model_name = model.identity.name
    tag_predictor_model(predictor, f"{model.identity.key}+{adapter_key[:16]}")
    predictor.reset_image()


@dataclass(frozen=True)
class EmbeddingKey:
    """What an embedding depends on."""

    image_hash: str
    model_key: str
    adapter_key: str
    tile_shape: tuple[int, int] | None = None
    halo: tuple[int, int] | None = None
    precision: str = "fp32"  # what the encoder computed in (see ``sam.precision``); entries are float32

    @property
    def name(self) -> str:
        """The entry's folder name: image hash, model, adapter, tiling and precision in one string."""
        tiling = f"{self.tile_shape}-{self.halo}" if self.tile_shape else "whole"
        precision = "" if self.precision == "fp32" else f"|{self.precision}"  # float32 entries keep their names
        digest = hashlib.sha256(
            f"{self.image_hash}|{self.model_key}|{self.adapter_key}|{tiling}{precision}".encode()
        ).hexdigest()
        return digest[:40]


class EmbeddingCache:
    """Image embeddings on disk, one zarr group per :class:`EmbeddingKey`."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir() / "embeddings"
        self.root.mkdir(parents=True, exist_ok=True)
        self.computed = 0  # encoder runs through this cache (tests and the status line use it)
        self.reused = 0

    def path(self, key: EmbeddingKey) -> Path:
        """The folder of ``key``'s entry (it may not exist yet)."""
        return self.root / f"{key.name}.zarr"

    def __contains__(self, key: EmbeddingKey) -> bool:
        path = self.path(key)
        if not path.exists():
            return False
        try:
            return "input_size" in zarr.open_group(str(path), mode="r").attrs
        except Exception:  # noqa: BLE001 - an unreadable entry is a missing entry
            return False

    def get_or_compute(
        self,
        predictor: Any,
        image: np.ndarray,
        key: EmbeddingKey,
        progress: ProgressCallback | None = None,
    ) -> dict:
        """Return the embeddings for ``key``: read from disk, or computed and stored.

        ``predictor`` must already carry the base model and adapter the key names.
        """
        bar = MicroSamProgress(progress)
        final = self.path(key)
        if key in self:
            self.reused += 1
            return _embed(predictor, image, final, key)
        if final.exists():  # an unreadable leftover
            shutil.rmtree(final, ignore_errors=True)
        with atomic_path(final, keep_existing=True) as tmp:  # another process may embed it at once
            embeddings = _embed(predictor, image, tmp, key, **bar.callbacks)
        self.computed += 1
        if isinstance(embeddings.get("features"), zarr.Array | zarr.Group):
            # Tiled embeddings point into the zarr group: reopen them from the final place.
            return _embed(predictor, image, final, key)
        return embeddings

    def read(self, key: EmbeddingKey) -> dict | None:
        """The stored whole-image embeddings for ``key`` (features as a numpy array), or None."""
        if key.tile_shape is not None or key not in self:
            return None
        group = zarr.open_group(str(self.path(key)), mode="r")
        self.reused += 1
        return {
            "features": np.asarray(zarr.open_array(str(self.path(key) / "features"), mode="r")[:]),
            "input_size": tuple(cast(list, group.attrs["input_size"])),
            "original_size": tuple(cast(list, group.attrs["original_size"])),
        }

    def store(self, predictor: Any, image: np.ndarray, key: EmbeddingKey, embeddings: dict) -> None:
        """Write whole-image embeddings computed elsewhere (e.g. from a block-k input) as an entry.

        The entry is the same as micro_sam would write, so ``get_or_compute`` serves it.
        """
        if key.tile_shape is not None:
            raise ValueError("Only whole-image embeddings can be stored directly.")
        final = self.path(key)
        if key in self:
            return
        with atomic_path(final) as tmp:
            group = zarr.open_group(str(tmp), mode="w")
            features = np.asarray(embeddings["features"], dtype=np.float32)
            input_size, original_size = list(embeddings["input_size"]), list(embeddings["original_size"])
            write_embedding_entry(group, features, image, predictor, input_size, original_size)

    def clear(self) -> None:
        """Delete every entry (the next embedding of each image computes it again)."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)


def _embed(
    predictor: Any, image: np.ndarray, path: Path, key: EmbeddingKey, **callbacks: Callable[..., None]
) -> dict:
    """micro_sam's embeddings of one 2D image (greyscale or RGB) in the zarr group at ``path``."""
    from micro_sam.util import precompute_image_embeddings

    return precompute_image_embeddings(
        predictor,
        image,
        save_path=str(path),
        ndim=IMAGE_NDIM,
        tile_shape=key.tile_shape,
        halo=key.halo,
        verbose=False,
        **callbacks,
    )
