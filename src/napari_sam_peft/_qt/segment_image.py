"""The Segment widget's image panel: which image layer, stepping through a series, and its embeddings.

The session opens the chosen layer (:meth:`AnnotatorSession.open`) and the panel embeds what it
returns, an image or a volume alike, saying how far it is in its status line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton
from psygnal import Signal
from qtpy.QtCore import QTimer

from napari_sam_peft._qt.background import BackgroundJobs
from napari_sam_peft._qt.dock_layout import on_click, show_text, wrapping
from napari_sam_peft._qt.image_series import image_layer_names, open_image_folder
from napari_sam_peft._qt.user_errors import user_errors
from napari_sam_peft.core.annotation.embeddings import EmbeddingKey
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.volume.propagation import StoppedError
from napari_sam_peft.session import Annotator, AnnotatorSession
from napari_sam_peft.session.shown import open_annotator

EMBEDDING_STATUS_MS = 250  # how often the status line follows the embedding (a volume's slice by slice)


class ImagePanel:
    """Picks the image to annotate, shows only it, and keeps its embeddings for the current model."""

    embedded = Signal(str)  # the shown image's (or volume's) embeddings are ready (its name)

    def __init__(self, viewer: napari.Viewer, session: AnnotatorSession, jobs: BackgroundJobs) -> None:
        self.viewer = viewer
        self.session = session
        self.jobs = jobs
        self.name: str | None = None  # the image layer chosen (shown by the session if it can be annotated)
        self.image_choice = ComboBox(label="image", choices=lambda *_: image_layer_names(viewer))
        self.previous_button = PushButton(text="< Previous", tooltip="Previous image [Shift+N]")
        self.next_button = PushButton(text="Next >", tooltip="Next image [N]")
        self.folder = FileEdit(label="folder", mode="d", tooltip="Open every image of a folder as an image series")
        self.embedding_status = wrapping(Label(value=""))
        self.series_row = Container(
            widgets=[self.previous_button, self.next_button], layout="horizontal", labels=False
        )
        self.image_choice.changed.connect(self.select)
        on_click(self.previous_button, lambda: self.step(-1))
        on_click(self.next_button, lambda: self.step(+1))
        # a folder opens on Enter (or leaving the field) and after Browse, not on every keystroke
        self._opened_folder = ""
        self.folder.line_edit.native.editingFinished.connect(self._folder_entered)
        self.folder.choose_btn.changed.connect(self._folder_entered)
        session.model.base_changed.connect(self._model_changed)
        session.model.adapter_changed.connect(self._model_changed)
        self._z = 0
        viewer.dims.events.current_step.connect(self._slice_changed)
        self._status_poll = QTimer(self.embedding_status.native)  # the status line while embedding
        self._status_poll.setInterval(EMBEDDING_STATUS_MS)
        self._status_poll.timeout.connect(self.update_embedding_status)

    @property
    def widgets(self) -> list[Any]:
        """The panel's widgets, top to bottom."""
        return [self.image_choice, self.series_row, self.folder, self.embedding_status]

    @property
    def annotator(self) -> Annotator | None:
        """What the session shows now (an image or a volume), or None."""
        return self.session.shown

    @property
    def embeddings(self) -> dict | None:
        """The shown 2D image's embeddings for the current model (None while they are computed)."""
        embedded = getattr(self.session.shown, "embedded", None)
        return embedded[1] if embedded is not None else None

    @property
    def embedding_key(self) -> EmbeddingKey | None:
        """The key of the shown 2D image's embeddings, or None."""
        embedded = getattr(self.session.shown, "embedded", None)
        return embedded[0] if embedded is not None else None

    @property
    def image_layer(self) -> napari.layers.Image | None:
        """The image layer shown, or None."""
        if self.name is None or self.name not in self.viewer.layers:
            return None
        return self.viewer.layers[self.name]

    def refresh_choices(self) -> None:
        """List the viewer's image layers again (raises RuntimeError once the widget is deleted)."""
        self.image_choice.reset_choices()

    def select(self, name: str | None) -> None:
        """Show image layer ``name``: hide the others, open it in the session, embed it."""
        if name == self.name:
            return
        self.name = name
        layer = self.image_layer
        if layer is None:
            self.session.open(None)
            return
        for other in self.viewer.layers:
            if isinstance(other, napari.layers.Image):
                other.visible = other == layer  # == : plugins get proxies of layers, a new one per lookup
        with user_errors() as outcome:
            self.session.open(name, layer.data, layer.rgb)
        if outcome.failed:
            self.embedding_status.value = "This image cannot be segmented."
            return
        self.compute_embeddings()

    @property
    def current_slice(self) -> int:
        """The volume slice on screen (kept from napari's dims events, so worker threads may read it)."""
        return self._z

    def _slice_changed(self, *_: object) -> None:
        step = self.viewer.dims.current_step
        self._z = int(step[0]) if len(step) >= 3 else 0
        self.update_embedding_status()

    def update_embedding_status(self) -> None:
        """Say how far the shown image's embeddings are (a volume: whether the slice on screen can be
        prompted)."""
        annotator = self.session.shown
        if annotator is not None:
            self.embedding_status.value = annotator.embedding_status(self._z)

    def step(self, step: int) -> None:
        """Show the next (``+1``) or previous (``-1``) image layer, wrapping around."""
        names = image_layer_names(self.viewer)
        if names:
            current = names.index(self.name) if self.name in names else -1
            self.image_choice.value = names[(current + step) % len(names)]

    def _folder_entered(self, *_: object) -> None:
        folder = self.folder.line_edit.value.strip()
        if folder and folder != self._opened_folder:
            self._opened_folder = folder
            self.open_folder(folder)

    def open_folder(self, folder: str | Path) -> None:
        """Open every image file of a folder as an image layer (an image series) and show the first."""
        with user_errors() as outcome:
            first = open_image_folder(self.viewer, folder)
        if not outcome.failed:
            self.image_choice.value = first

    def _model_changed(self, *_: object) -> None:
        # Embeddings depend on model and adapter: recompute (or fetch from the cache) for the shown image.
        self.compute_embeddings()

    def compute_embeddings(self) -> None:
        """Compute (or fetch from the cache) the shown image's embeddings on a worker thread; a volume's
        slice by slice, the slice on screen first."""
        annotator = self.session.shown
        if annotator is None:
            return
        with user_errors() as outcome:
            self.update_embedding_status()
        if outcome.failed or self.session.model.loaded is None:
            return
        self._status_poll.start()

        def work(report: Any) -> None:
            try:
                annotator.embed(
                    lambda: self._z, progress=report, should_stop=lambda: self.session.shown is not annotator
                )
            except StoppedError:  # another image was shown, or the model changed: nothing to report
                return

        def done(_: None) -> None:
            if self.session.shown is not annotator:
                return
            self._status_poll.stop()
            self.update_embedding_status()
            if annotator.ready:
                self.embedded.emit(annotator.name)

        self.jobs.run(f"Embedding {annotator.name}", work, done)

    def require(self) -> Annotator:
        """The shown image or volume, ready for prompts.

        Raises
        ------
        SamPeftError
            No model, no image, an image SAM cannot take, or embeddings still being computed.
        """
        if self.session.model.loaded is None:
            raise SamPeftError("Load a model first (Segment widget: 'Load model').")
        annotator = self.session.shown
        if annotator is None:
            layer = self.image_layer
            if layer is None:
                raise SamPeftError("Pick an image layer first.")
            open_annotator(self.session.model, self.session.embeddings, layer.name, layer.data, layer.rgb)
            raise SamPeftError("This image cannot be segmented: pick another image layer.")
        annotator.require()
        return annotator

    def show_failure(self, message: str) -> None:
        """Say that background work failed, and why (it stays after the notification is gone)."""
        self._status_poll.stop()
        show_text(self.embedding_status, f"Failed: {message}")

    def disconnect(self) -> None:
        """Stop observing the session (the widget is closing)."""
        self.session.model.base_changed.disconnect(self._model_changed)
        self.session.model.adapter_changed.disconnect(self._model_changed)
        self.viewer.dims.events.current_step.disconnect(self._slice_changed)
        self._status_poll.stop()
