"""One viewer's annotator state, made of three parts: the model, its embeddings, and the annotations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.images import check_image
from napari_sam_peft.core.annotation.progress import ProgressCallback
from napari_sam_peft.core.annotation.uncertainty import Uncertainty, image_uncertainty

from .committed_objects import CommittedObjects
from .embeddings import SessionEmbeddings
from .live_model import LiveModel
from .training import TrainingRuns


class AnnotatorSession:
    """The model a viewer segments with, its embeddings, and the objects committed on its images.

    One session per viewer; the plugin's widgets observe its parts' signals and never reach
    into each other, nor write a field of the session. It knows no Qt: a script or a test
    drives it the same way.

    Attributes
    ----------
    model
        Base model, adapter with its instance decoder, precision, hot reloads
        (:class:`~napari_sam_peft.session.live_model.LiveModel`; signals ``base_changed``,
        ``adapter_changed``).
    embeddings
        The embedding cache, kept stage inputs for fast reloads and the shown image's embeddings
        (:class:`~napari_sam_peft.session.embeddings.SessionEmbeddings`).
    annotations
        Each image's committed labels, undo, and the store recording them
        (:class:`~napari_sam_peft.session.committed_objects.CommittedObjects`; signals
        ``store_changed``, ``store_updated``, ``labels_changed``).
    training
        Training runs on the store in a worker process, their events and the hot reload of each new best
        adapter (:class:`~napari_sam_peft.session.training.TrainingRuns`; signals ``started``, ``event``,
        ``ended``).

    Parameters
    ----------
    cache
        The embedding cache (None: the default folder).
    default_store
        Where the first commit creates a store when none is open (see :class:`CommittedObjects`).
    """

    def __init__(
        self, cache: EmbeddingCache | None = None, default_store: Callable[[], Path | None] | None = None
    ) -> None:
        self.model = LiveModel()
        self.embeddings = SessionEmbeddings(self.model, cache)
        self.annotations = CommittedObjects(default_store)
        self.training = TrainingRuns(self.model, self.annotations)

    def uncertainty(
        self, image: np.ndarray, rgb: bool | None = None, progress: ProgressCallback | None = None
    ) -> Uncertainty:
        """How unsure the current model (with its adapter) is on ``image`` (embeds it, through the cache)."""
        _, embedded = self.embeddings.compute(image, rgb, progress=progress)
        with self.model.lock:
            return image_uncertainty(self.model.predictor, embedded, check_image(image, rgb).shape)
