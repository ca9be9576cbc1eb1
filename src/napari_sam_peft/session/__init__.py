"""The state the plugin's widgets share for one viewer, with events, and no Qt.

One :class:`AnnotatorSession` per viewer is made of four parts: ``session.model`` (base
model, adapter with its instance decoder, precision and hot reloads: :mod:`.live_model`,
:mod:`.live_decoder`, :mod:`.adapter_reload`), ``session.embeddings`` (the cache and kept stage
inputs: :mod:`.embeddings`), ``session.annotations`` (each image's committed labels, undo and the
store recording them: :mod:`.committed_objects`) and ``session.training`` (runs and their hot
reloads: :mod:`.training`). ``session.open`` shows an image or a volume and returns its annotator,
one shape for both (:mod:`.shown`, :mod:`.image_annotator`, :mod:`.volume_annotator`).
Widgets observe the signals (payloads in :mod:`.events`) and never reach into each other.
"""

from .adapter_reload import ReloadState
from .annotator import AnnotatorSession
from .committed_objects import OpenedImage
from .errors import NoModelError, SessionBusyError
from .events import AdapterChange, StoreUpdate
from .live_decoder import AIS, AMG
from .shown import Annotator

__all__ = [
    "AIS",
    "AMG",
    "AdapterChange",
    "Annotator",
    "AnnotatorSession",
    "NoModelError",
    "OpenedImage",
    "ReloadState",
    "SessionBusyError",
    "StoreUpdate",
]
