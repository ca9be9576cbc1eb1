"""One :class:`AnnotatorSession` per napari window, shared by the plugin's widgets.

The session is kept on the viewer's window object, so it lives and dies with the window
and no module-level registry is needed.
"""

from __future__ import annotations

import napari

from napari_sam_peft.session import AnnotatorSession

_ATTRIBUTE = "_napari_sam_peft_session"


def session_for(viewer: napari.Viewer) -> AnnotatorSession:
    """The viewer's session, created on first use."""
    window = viewer.window
    session = getattr(window, _ATTRIBUTE, None)
    if session is None:
        session = AnnotatorSession()
        setattr(window, _ATTRIBUTE, session)
    return session
