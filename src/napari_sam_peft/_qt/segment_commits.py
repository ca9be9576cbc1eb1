"""The Segment widget's committed objects: the ``committed_objects`` layer and where it is recorded.

The session owns each image's labels, commits, undoes and records them (see
:class:`~napari_sam_peft.session.committed_objects.CommittedObjects`); this panel shows the
labels in the layer, redraws it when the session changes them, tells the session when the
user paints (brush, eraser, fill) and has it record once the user pauses. Its one widget says
where the committed objects go.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import napari
import numpy as np
from magicgui.widgets import Label
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer

from napari_sam_peft._qt import prompt_layers
from napari_sam_peft._qt.dock_layout import show_text, wrapping
from napari_sam_peft._qt.user_errors import notify_error, user_errors
from napari_sam_peft.core.annotation.commits import PROMPTED
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.session import Annotator, AnnotatorSession

LAYER = "committed_objects"
PAINT_SETTLE_MS = 400  # record hand corrections once the user pauses painting
NOT_RECORDED = "The committed objects were not recorded as training data: "
NOT_RESTORED = "Could not read this image's committed objects from the store: "


class CommitsPanel:
    """Shows each image's committed objects and keeps the session's store equal to them."""

    def __init__(self, viewer: napari.Viewer, session: AnnotatorSession) -> None:
        self.viewer = viewer
        self.session = session
        self.store_status = wrapping(Label(value=""))
        self._watched: napari.layers.Labels | None = None
        self._paint_timer = QTimer(self.store_status.native)
        self._paint_timer.setSingleShot(True)
        self._paint_timer.setInterval(PAINT_SETTLE_MS)
        self._paint_timer.timeout.connect(self.record)
        annotations = session.annotations
        annotations.store_changed.connect(self._store_changed)
        annotations.store_updated.connect(self.update_status)
        annotations.labels_changed.connect(self._labels_changed)

    @property
    def widgets(self) -> list[Any]:
        """The panel's widgets, top to bottom."""
        return [self.store_status]

    @property
    def corrections_pending(self) -> bool:
        """Whether hand corrections wait for the user to pause painting before they are recorded."""
        return self._paint_timer.isActive()

    def show(self, annotator: Annotator) -> None:
        """Show the committed objects of the image or volume the session shows now."""
        opened = self.session.annotations.open_image(annotator.name, annotator.data, volume=annotator.is_volume)
        if opened.store_error is not None:
            notify_error(opened.store_error, NOT_RESTORED)
        elif opened.restored is not None:
            show_info(f"{opened.restored} committed objects of this image loaded from the store.")
        layer = prompt_layers.labels_layer(self.viewer, LAYER, opened.labels.shape)
        layer.data = opened.labels
        if self._watched != layer:  # != : the viewer hands plugins a new proxy of the layer per lookup
            layer.events.paint.connect(self._painted)
            self._watched = layer
        self.update_status()

    def _store_changed(self, *_: object) -> None:
        """Another store: show what it holds for the shown image (after a restart, the store opens after
        the first image was shown)."""
        annotator = self.session.shown
        if annotator is not None and self._shown() is not None:
            self.show(annotator)
        self.update_status()

    def leave(self) -> None:
        """Record corrections still waiting on the shown image and keep its labels for when it returns."""
        if self._paint_timer.isActive():
            self.record()
        shown = self._shown()
        if shown is not None:
            self.session.annotations.keep_labels(shown[0].name, shown[1].data)

    def commit(
        self, objects: np.ndarray, prompts: Sequence[ObjectPrompts] = (), sources: str | Sequence[str] = PROMPTED
    ) -> None:
        """Commit each object of ``objects`` under a new id (see :meth:`CommittedObjects.commit`)."""
        shown = self._shown()
        if shown is None:
            notify_error(SamPeftError("Pick an image layer first."))
            return
        image, committed = shown
        labels = committed.data
        self._paint_timer.stop()
        with user_errors(NOT_RECORDED):
            self.session.annotations.commit(image.name, self._pixels(), labels, objects, prompts, sources)

    def undo(self) -> None:
        """Undo the last commit on the shown image."""
        shown = self._shown()
        undone = None
        with user_errors(NOT_RECORDED) as outcome:
            if shown is not None:
                undone = self.session.annotations.undo(shown[0].name, self._pixels(), shown[1].data)
        if shown is None or (undone is None and not outcome.failed):
            show_info("Nothing to undo on this image.")
            return
        self._paint_timer.stop()

    def record(self) -> None:
        """Have the session record the images painted by hand (the user paused painting)."""
        self._paint_timer.stop()
        with user_errors(NOT_RECORDED):
            self.session.annotations.record_edited()

    def _painted(self, _event: object) -> None:
        shown = self._shown()
        if shown is not None:
            self.session.annotations.mark_edited(shown[0].name, shown[1].data)
            self._paint_timer.start()

    def _labels_changed(self, name: str) -> None:
        shown = self._shown()
        if shown is not None and shown[0].name == name:
            shown[1].refresh()

    def update_status(self, *_: object) -> None:
        """Say where committed objects go (the whole path on hover)."""
        text, path = self.session.annotations.store_description()
        show_text(self.store_status, text, path)

    def disconnect(self) -> None:
        """Stop observing the session (the widget is closing)."""
        annotations = self.session.annotations
        annotations.store_changed.disconnect(self._store_changed)
        annotations.store_updated.disconnect(self.update_status)
        annotations.labels_changed.disconnect(self._labels_changed)

    def _pixels(self) -> Any:
        """What identifies the shown image in the store (:attr:`Annotator.data`: a volume's array as the layer
        holds it, read slice by slice, never whole)."""
        annotator = self.session.shown
        assert annotator is not None  # _shown() checked it
        return annotator.data

    def _shown(self) -> tuple[napari.layers.Image, napari.layers.Labels] | None:
        """The shown image's layer and ``committed_objects``, or None."""
        layers = self.viewer.layers
        annotator = self.session.shown
        if annotator is None or annotator.name not in layers or LAYER not in layers:
            return None
        return layers[annotator.name], layers[LAYER]
