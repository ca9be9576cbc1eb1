"""The one :class:`~napari_sam_peft.session.AnnotatorSession` of a napari window, and its default store.

The session is kept on the viewer's window object, so it lives and dies with the window
and no module-level registry is needed. The attribute is public: napari hands plugins a
proxy of the viewer that warns on private attributes (and will refuse them from 0.10).
"""

from __future__ import annotations

from pathlib import Path

import napari
from magicgui.widgets import Container

from napari_sam_peft.core.data.store import DEFAULT_STORE_NAME
from napari_sam_peft.session import AnnotatorSession

ATTRIBUTE = "napari_sam_peft_session"


def session_for(viewer: napari.Viewer) -> AnnotatorSession:
    """The viewer's session, created on first use; every widget of one window gets the same one."""
    window = viewer.window
    session = getattr(window, ATTRIBUTE, None)
    if session is None:
        session = AnnotatorSession(default_store=lambda: default_store_path(viewer))
        setattr(window, ATTRIBUTE, session)
    # napari's plugin proxy wraps objects of modules named napari*: hand out the session itself,
    # so every widget holds the same object.
    return getattr(session, "__wrapped__", session)


def default_store_path(viewer: napari.Viewer) -> Path:
    """One store per image folder: next to the first image layer opened from a file, else in ~/napari-sam-peft."""
    for layer in viewer.layers:
        source = getattr(getattr(layer, "source", None), "path", None)
        if isinstance(layer, napari.layers.Image) and source:
            folder = Path(source)
            return (folder if folder.is_dir() else folder.parent) / DEFAULT_STORE_NAME
    return Path.home() / "napari-sam-peft" / DEFAULT_STORE_NAME


class SessionDock(Container):
    """A dock of this plugin: a column of panels sharing the viewer and the window's one session."""

    def __init__(self, napari_viewer: napari.Viewer, labels: bool = True) -> None:
        super().__init__(labels=labels)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
