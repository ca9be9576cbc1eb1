"""One viewer's annotator state: the model, its embeddings, the annotations, training, and what is shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from napari_sam_peft.core.annotation.automatic import typical_object_size
from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.images import check_image
from napari_sam_peft.core.annotation.progress import ProgressCallback
from napari_sam_peft.core.annotation.uncertainty import Uncertainty, image_uncertainty

from .committed_objects import CommittedObjects
from .embeddings import SessionEmbeddings
from .live_model import LiveModel
from .shown import Annotator, open_annotator
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

    One image or volume is shown at a time (:meth:`open`, :attr:`shown`); signals ``leaving`` (the
    shown one is about to change) and ``opened`` (the new one's :class:`~.shown.Annotator`).

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
        self._shown: Annotator | None = None

    leaving = Signal()  # the shown image or volume is about to change
    opened = Signal(object)  # the Annotator of the image or volume now shown

    @property
    def shown(self) -> Annotator | None:
        """The image or volume annotated now, or None."""
        return self._shown

    def open(self, name: str | None, data: Any = None, rgb: bool | None = None) -> Annotator | None:
        """Show image or volume ``name`` (``data``: its pixels; a volume's array is read slice by slice) and
        return its annotator; None: show nothing. Emits ``leaving``, then ``opened`` once it can be
        annotated (embed it next: :meth:`Annotator.embed`).

        Raises
        ------
        InvalidImageError, InvalidVolumeError
            What SAM cannot take, with what to do (nothing is shown then).
        """
        self.leaving.emit()
        self._shown = None
        if name is None or data is None:
            return None
        annotator = open_annotator(self.model, self.embeddings, name, data, rgb, self.typical_object_size)
        self._shown = annotator
        self.opened.emit(annotator)
        return annotator

    def typical_object_size(self) -> float | None:
        """The median side in pixels of the store's objects (None without a store or objects): the automatic
        segmentation's point grid puts two points across it (``core.annotation.automatic.grid_size``)."""
        store = self.annotations.store
        if store is None:
            return None
        return typical_object_size([obj.bbox for image in store.snapshot().images for obj in image.objects])

    def uncertainty(
        self, image: np.ndarray, rgb: bool | None = None, progress: ProgressCallback | None = None
    ) -> Uncertainty:
        """How unsure the current model (with its adapter) is on ``image`` (embeds it, through the cache)."""
        _, embedded = self.embeddings.compute(image, rgb, progress=progress)
        with self.model.lock:
            return image_uncertainty(self.model.predictor, embedded, check_image(image, rgb).shape)
