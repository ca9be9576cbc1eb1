"""The errors a session raises that a user can cause, each saying what to do."""

from __future__ import annotations

from napari_sam_peft.core.errors import SamPeftError


class NoModelError(SamPeftError):
    """An action that needs a model before one is loaded."""


class SessionBusyError(SamPeftError):
    """The model is busy with long work on a worker thread."""
