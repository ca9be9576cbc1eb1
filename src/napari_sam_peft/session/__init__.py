"""The state the plugin's widgets share for one viewer, with events, and no Qt.

One :class:`AnnotatorSession` per viewer holds the base model, the active adapter, the
predictor and the embedding cache (:mod:`.live_model`), and the committed objects of each
image with their undo history and the annotation store that records them
(:mod:`.committed_objects`). Widgets observe its signals (payloads in :mod:`.events`) and
never reach into each other.
"""

from .annotator import AnnotatorSession
from .committed_objects import OpenedImage
from .errors import NoModelError, SessionBusyError
from .events import AdapterChange, StoreUpdate

__all__ = [
    "AdapterChange",
    "AnnotatorSession",
    "NoModelError",
    "OpenedImage",
    "SessionBusyError",
    "StoreUpdate",
]
