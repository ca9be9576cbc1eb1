"""Annotating a 2D image: its embeddings for the live model, masks from prompts, automatic segmentation,
without Qt. The image's side of :class:`~napari_sam_peft.session.shown.Annotator` (a volume's:
:class:`~napari_sam_peft.session.volume_annotator.VolumeAnnotator`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from napari_sam_peft.core.annotation.images import check_image
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.errors import SamPeftError

from .embeddings import Embedded, SessionEmbeddings
from .live_model import LiveModel

Progress = Callable[[int, int], None]


class ImageAnnotator:
    """The live model's view of one 2D image (greyscale or RGB).

    Its embeddings belong to one model version (model, adapter, precision): after a reload they read as
    None until :meth:`embed` runs again (from the cache when the adapter left them unchanged).

    Raises
    ------
    InvalidImageError
        (On creation) what SAM cannot take, with what to do.
    """

    is_volume = False
    one_object_at_a_time = False  # batch mode segments several objects at once

    def __init__(
        self,
        model: LiveModel,
        embeddings: SessionEmbeddings,
        image: Any,
        rgb: bool | None = None,
        name: str = "",
        object_size: Callable[[], float | None] | None = None,
    ) -> None:
        self.name = name
        self._object_size = object_size or (lambda: None)  # sizes the automatic point grid
        self.data: np.ndarray = check_image(image, rgb)
        self.rgb = rgb
        self.labels_shape: tuple[int, ...] = tuple(self.data.shape[:2])
        self._model = model
        self._embeddings = embeddings
        self._embedded: tuple[int, Embedded, bool] | None = None  # model version, embeddings, from the cache
        self._in_cache: tuple[int, bool] | None = None  # model version, whether the cache holds them

    def slice_of(self, z: int) -> int | None:
        """Which slice prompts on screen belong to: None, an image has one plane."""
        return None

    def plane(self, z: int) -> tuple[int, ...]:
        """The index of the labels the slice on screen shows: the whole image."""
        return ()

    @property
    def embedded(self) -> Embedded | None:
        """The embeddings' key and micro_sam's dict for the current model version, or None (not yet)."""
        done = self._embedded
        if done is None or done[0] != self._model.version:
            return None
        return done[1]

    @property
    def ready(self) -> bool:
        """Whether prompts can be segmented now."""
        return self.embedded is not None

    def embed(
        self,
        focus: Callable[[], int] | None = None,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        """Compute (or read from the cache) the embeddings for the current model (on a worker thread)."""
        model = self._model
        with model.lock:  # no adapter switch between reading the version and embedding
            version = model.version
            cached = self._cached()
            embedded = self._embeddings.compute(self.data, self.rgb, progress=progress)
        self._embedded = (version, embedded, cached)

    def _cached(self) -> bool:
        """Whether the cache holds the embeddings for the current model version (the image is hashed once per
        version, not at every status update)."""
        version = self._model.version
        if self._in_cache is None or self._in_cache[0] != version:
            self._in_cache = (version, self._embeddings.key(self.data) in self._embeddings.cache)
        return self._in_cache[1]

    def embedding_status(self, z: int = 0) -> str:
        """Where the embeddings are, in a line for the user."""
        done = self._embedded
        if done is not None and done[0] == self._model.version:
            return f"Embeddings ready ({'cached' if done[2] else 'computed'})."
        if self._model.loaded is None:
            return "Load a model to compute embeddings."
        return "Loading cached embeddings..." if self._cached() else "Computing embeddings..."

    def require(self) -> None:
        """Check that prompts and automatic segmentation can run now.

        Raises
        ------
        SamPeftError
            No model, or the embeddings are still being computed.
        """
        self._model.require()
        if self.embedded is None:
            raise SamPeftError(
                "The embeddings are still being computed: wait for the progress bar, then try again."
            )

    def segment(self, objects: list[ObjectPrompts], z: int = 0) -> list[np.ndarray]:
        """A mask (H, W) per object from its prompts (the ``S`` key)."""
        self.require()
        embedded = self.embedded
        assert embedded is not None
        return self._model.segment(embedded[1], objects)

    @property
    def automatic_method(self) -> str:
        """What :meth:`automatic` runs (AIS with which decoder, or mask generation)."""
        return self._model.decoder.description

    @property
    def automatic_title(self) -> str:
        """The progress bar's title for :meth:`automatic`."""
        return "Automatic segmentation"

    def automatic(
        self,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        points_per_side: int | None = None,
    ) -> np.ndarray:
        """Every object of the image (H, W): AIS with the live decoder, else mask generation."""
        self.require()
        embedded = self.embedded
        assert embedded is not None
        return self._model.automatic(
            self.data,
            embedded[1],
            progress=progress,
            rgb=self.rgb,
            points_per_side=points_per_side,
            object_size=self._object_size(),
        )

    def keep_stage_input(self, stage: int) -> None:
        """Keep encoder stage ``stage``'s input, so each reload re-embeds only the adapted blocks."""
        self._embeddings.keep_stage_input(self.data, stage, self.rgb)
