"""The state the plugin's widgets share for one viewer, with events, and no Qt.

One :class:`AnnotatorSession` per viewer is made of three parts: ``session.model`` (base
model, adapter with its instance decoder, precision and hot reloads: :mod:`.live_model`,
:mod:`.live_decoder`, :mod:`.adapter_reload`), ``session.embeddings`` (the cache, kept stage
inputs and the shown image's embeddings: :mod:`.embeddings`) and ``session.annotations`` (each
image's committed labels, undo and the store recording them: :mod:`.committed_objects`).
Widgets observe the parts' signals (payloads in :mod:`.events`) and never reach into each other.
"""

from .adapter_reload import ReloadState
from .annotator import AnnotatorSession
from .committed_objects import OpenedImage
from .embeddings import ShownImage
from .errors import NoModelError, SessionBusyError
from .events import AdapterChange, StoreUpdate
from .live_decoder import AIS, AMG

__all__ = [
    "AIS",
    "AMG",
    "AdapterChange",
    "AnnotatorSession",
    "NoModelError",
    "OpenedImage",
    "ReloadState",
    "SessionBusyError",
    "ShownImage",
    "StoreUpdate",
]
