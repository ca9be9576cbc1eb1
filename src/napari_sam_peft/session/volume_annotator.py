"""Annotating a volume: its per-slice embeddings for the live model, a slice segmented from prompts,
an object propagated through z, and automatic 3D, without Qt.

One :class:`VolumeAnnotator` per shown volume. Its embeddings belong to one model version (model,
adapter, precision): after a reload they are stale and :meth:`VolumeAnnotator.features` starts
again, the slice on screen first (each slice's cache entry makes a frozen-encoder adapter's
re-embedding a read). Work that takes a while (``embed``, ``propagate``, ``automatic``) runs on a
worker thread and can be stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.volume.automatic import automatic_volume
from napari_sam_peft.core.volume.embed import embed_volume
from napari_sam_peft.core.volume.propagation import Propagated, PropagationSettings, StoppedError, propagate
from napari_sam_peft.core.volume.slice_features import VolumeFeatures
from napari_sam_peft.core.volume.volumes import VolumeShape, check_volume

from .embeddings import SessionEmbeddings
from .live_model import LiveModel

Progress = Callable[[int, int], None]


class VolumeAnnotator:
    """The live model's view of one volume (Z, Y, X[, 3]), read slice by slice, never loaded whole.

    The volume's side of :class:`~napari_sam_peft.session.shown.Annotator`.

    Raises
    ------
    InvalidVolumeError
        (On creation) what SAM cannot take slice by slice, with what to do.
    """

    is_volume = True
    one_object_at_a_time = True  # one object per slice's prompts; propagation carries it through z

    def __init__(
        self,
        model: LiveModel,
        embeddings: SessionEmbeddings,
        volume: Any,
        rgb: bool | None = None,
        name: str = "",
        object_size: Callable[[], float | None] | None = None,
    ) -> None:
        self.shape: VolumeShape = check_volume(volume, rgb)
        self._object_size = object_size or (lambda: None)  # sizes the automatic point grid
        self.name = name
        self.volume = volume
        self.data = volume  # read slice by slice, as the layer holds it (zarr, dask, numpy)
        self.rgb = rgb
        self.labels_shape: tuple[int, ...] = tuple(self.shape.labels_shape)
        self._model = model
        self._embeddings = embeddings
        self._features = VolumeFeatures(self.shape.n_slices)
        self._embedded_version = model.version

    def slice_of(self, z: int) -> int | None:
        """Which slice prompts on screen belong to: ``z``, the slice on screen."""
        return z

    def plane(self, z: int) -> tuple[int, ...]:
        """The index of the labels the slice on screen shows."""
        return (z,)

    @property
    def ready(self) -> bool:
        """Whether every slice is embedded with the current model."""
        return self.features.complete

    def embedding_status(self, z: int = 0) -> str:
        """How far the slices' embeddings are, and whether slice ``z`` can be prompted."""
        if self._model.loaded is None:
            return "Load a model to compute embeddings."
        features = self.features
        done, total = features.count, features.n_slices
        if features.complete:
            return f"Embeddings ready: all {total} slices."
        if features.ready(z):
            return f"Slice {z} is ready to prompt; embedding the others ({done}/{total})."
        return f"Slice {z} is not embedded yet: it is next ({done}/{total} slices)."

    def require(self) -> None:
        """Check that a model is loaded (slices are embedded as they are needed)."""
        self._model.require()

    def segment(self, objects: list[ObjectPrompts], z: int = 0) -> list[np.ndarray]:
        """The object's mask on slice ``z`` from its prompts there (the ``S`` key): one object at a time.

        Raises
        ------
        SamPeftError
            More than one object is prompted on the slice.
        SliceNotReadyError
            Slice ``z`` is not embedded yet (it is next in line once the user is on it).
        """
        self.require()
        if len(objects) > 1:
            raise SamPeftError(
                f"In a volume one object is segmented at a time, but slice {z} has {len(objects)} boxes: "
                "keep one box (with its points), commit the object (C), then draw the next."
            )
        return [self.segment_slice(z, objects[0])]

    @property
    def automatic_method(self) -> str:
        """What :meth:`automatic` runs."""
        return f"{self._model.decoder.description}, per slice, merged in 3D"

    @property
    def automatic_title(self) -> str:
        """The progress bar's title for :meth:`automatic`."""
        return f"Automatic 3D segmentation of {self.shape.n_slices} slices"

    def keep_stage_input(self, stage: int) -> None:
        """Nothing to keep: a volume's slices re-embed from their cache entries after a reload."""

    @property
    def features(self) -> VolumeFeatures:
        """The slices embedded with the current model version (a new, empty set after a reload)."""
        if self._embedded_version != self._model.version:
            self._features = VolumeFeatures(self.shape.n_slices)
            self._embedded_version = self._model.version
        return self._features

    def embed(
        self,
        focus: Callable[[], int],
        progress: Progress | None = None,
        on_slice: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> VolumeFeatures:
        """Embed every slice not embedded yet, nearest to ``focus()`` (the slice on screen) first.

        A reload meanwhile starts the new model's embeddings over (the finished ones were the old model's).
        """
        features = self.features
        embed_volume(
            features,
            self._embed_slice,
            lambda: focus(),
            progress=progress,
            on_slice=on_slice,
            should_stop=lambda: (should_stop is not None and should_stop()) or features is not self.features,
        )
        return features

    def _embed_slice(self, z: int) -> dict:
        """Slice ``z``'s embeddings, kept on disk in its cache entry (read when the slice is used)."""
        key, embeddings = self._embeddings.compute_slice(self.volume, z)
        features = self._embeddings.cache.path(key) / "features"
        if features.exists():
            import zarr

            embeddings = {**embeddings, "features": zarr.open_array(str(features), mode="r")}
        return embeddings

    def segment_slice(self, z: int, prompts: ObjectPrompts) -> np.ndarray:
        """One object's mask on slice ``z`` from its prompts there (the ``S`` key).

        Raises
        ------
        SliceNotReadyError
            Slice ``z`` is not embedded yet (it is next in line once the user is on it).
        """
        embeddings = self.features.slice_embeddings(z)
        (mask,) = self._model.segment(embeddings, [prompts])
        return mask

    def propagate(
        self,
        seeds: Mapping[int, np.ndarray | None],
        settings: PropagationSettings | None = None,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Propagated:
        """The object of ``seeds`` (slice -> mask, None: a stop slice) carried through z (``Shift+S``).

        Waits for the slices it reaches to be embedded by embedding them itself (on this thread).
        """
        features = self.features
        with self._model.lock:
            self._fill(features, should_stop)
            return propagate(
                self._model.predictor, features, seeds, settings, progress=progress, should_stop=should_stop
            )

    def propagate_prompts(
        self,
        prompts: Mapping[int, ObjectPrompts],
        settings: PropagationSettings | None = None,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Propagated:
        """Segment the object on each prompted slice, then propagate it (micro_sam's ``Shift+S``).

        A slice whose prompts are only negative points is a stop slice (only the first or the last).
        """
        with self._model.lock:
            self._fill(self.features, should_stop)
            seeds = {z: None if obj.is_empty else self.segment_slice(z, obj) for z, obj in sorted(prompts.items())}
            return self.propagate(seeds, settings, progress, should_stop)

    def automatic(
        self,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        points_per_side: int | None = None,
    ) -> np.ndarray:
        """Every object of the volume: AIS with the live decoder (else mask generation), merged across z."""
        features = self.features
        with self._model.lock:
            self._fill(features, should_stop)
            decoder = self._model.automatic_decoder()  # the same rule as an image's
            return automatic_volume(
                self._model.predictor,
                decoder,
                self.volume,
                features,
                points_per_side=points_per_side,
                object_size=self._object_size(),
                autocast=self._model.precision.autocast,
                progress=progress,
                should_stop=should_stop,
            )

    def _fill(self, features: VolumeFeatures, should_stop: Callable[[], bool] | None) -> None:
        for z in features.missing():
            if should_stop is not None and should_stop():
                raise StoppedError()
            features.put(z, self._embed_slice(z))
