"""One viewer's annotator state: the model it segments with and the objects it commits."""

from __future__ import annotations

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache

from .automatic_model import AutomaticModel
from .committed_objects import CommittedObjects


class AnnotatorSession(AutomaticModel, CommittedObjects):
    """Base model, active adapter (with its instance decoder), predictor, embedding cache, committed
    objects and their store.

    One session per viewer; the plugin's widgets observe its signals and never reach into
    each other. It knows no Qt: a script or a test drives it the same way.

    Signals
    -------
    model_changed(LoadedModel)
        A new base model (without an adapter).
    adapter_changed(AdapterChange)
        An adapter attached or detached.
    store_changed(AnnotationStore | None)
        Another store receives the committed objects.
    store_updated(StoreUpdate)
        The store's content changed.
    flush_requested()
        Corrections still waiting should be recorded now.
    """

    def __init__(self, cache: EmbeddingCache | None = None) -> None:
        AutomaticModel.__init__(self, cache)
        CommittedObjects.__init__(self)
        #: name of the image layer the Segment widget shows (committed_objects belongs to it)
        self.current_image: str | None = None
