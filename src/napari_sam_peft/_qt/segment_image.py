"""The Segment widget's image panel: which image layer, stepping through a series, and its embeddings."""

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
from napari_sam_peft.core.annotation.images import check_image
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.volume.propagation import StoppedError
from napari_sam_peft.core.volume.volumes import is_volume
from napari_sam_peft.session import AnnotatorSession

VOLUME_STATUS_MS = 250  # how often the status line follows a volume's embedding


class ImagePanel:
    """Picks the image to annotate, shows only it, and keeps its embeddings for the current model."""

    leaving = Signal()  # the shown image is about to change
    opened = Signal(str, object)  # (name, checked pixels): a segmentable image is shown
    embedded = Signal(str)  # the shown image's embeddings are ready (its name)

    def __init__(self, viewer: napari.Viewer, session: AnnotatorSession, jobs: BackgroundJobs) -> None:
        self.viewer = viewer
        self.session = session
        self.jobs = jobs
        self.name: str | None = None  # the image layer shown
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
        self._volume_poll = QTimer(self.embedding_status.native)  # the status line while slices embed
        self._volume_poll.setInterval(VOLUME_STATUS_MS)
        self._volume_poll.timeout.connect(self.update_volume_status)

    @property
    def widgets(self) -> list[Any]:
        """The panel's widgets, top to bottom."""
        return [self.image_choice, self.series_row, self.folder, self.embedding_status]

    @property
    def embeddings(self) -> dict | None:
        """The shown image's embeddings for the current model (None while they are computed)."""
        embedded = self.session.embeddings.shown_embeddings
        return embedded[1] if embedded is not None else None

    @property
    def embedding_key(self) -> EmbeddingKey | None:
        """The key of the shown image's embeddings, or None."""
        embedded = self.session.embeddings.shown_embeddings
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
        """Show image layer ``name``: hide the others, open its committed objects, embed it."""
        if name == self.name:
            return
        self.leaving.emit()
        self.name = name
        self.session.embeddings.show(None)
        layer = self.image_layer
        if layer is None:
            return
        for other in self.viewer.layers:
            if isinstance(other, napari.layers.Image):
                other.visible = other == layer  # == : plugins get proxies of layers, a new one per lookup
        if is_volume(layer.data, layer.rgb):
            self._open_volume(name, layer)
            return
        with user_errors() as outcome:
            image = check_image(layer.data, layer.rgb)
        if outcome.failed:
            self.embedding_status.value = "This image cannot be segmented."
            return
        self.session.embeddings.show(name, image, layer.rgb)
        self.opened.emit(name, image)
        if self.session.model.loaded is not None:
            self.compute_embeddings()
        else:
            self.embedding_status.value = "Load a model to compute embeddings."

    def _open_volume(self, name: str, layer: napari.layers.Image) -> None:
        with user_errors() as outcome:
            self.session.embeddings.show_volume(name, layer.data, layer.rgb)
        if outcome.failed:
            self.embedding_status.value = "This volume cannot be segmented."
            return
        self.opened.emit(name, layer.data)
        if self.session.model.loaded is not None:
            self.compute_embeddings()
        else:
            self.embedding_status.value = "Load a model to compute embeddings."

    @property
    def current_slice(self) -> int:
        """The volume slice on screen (kept from napari's dims events, so worker threads may read it)."""
        return self._z

    def _slice_changed(self, *_: object) -> None:
        step = self.viewer.dims.current_step
        self._z = int(step[0]) if len(step) >= 3 else 0
        if self.session.embeddings.shown_volume is not None:
            self.update_volume_status()

    def update_volume_status(self) -> None:
        """Say how far the shown volume's embeddings are, and whether the slice on screen can be prompted."""
        shown = self.session.embeddings.shown_volume
        if shown is None:
            return
        features, z = shown.annotator.features, self._z
        done, total = features.count, features.n_slices
        if features.complete:
            self.embedding_status.value = f"Embeddings ready: all {total} slices."
        elif features.ready(z):
            self.embedding_status.value = f"Slice {z} is ready to prompt; embedding the others ({done}/{total})."
        else:
            self.embedding_status.value = f"Slice {z} is not embedded yet: it is next ({done}/{total} slices)."

    def _embed_volume(self) -> None:
        shown = self.session.embeddings.shown_volume
        assert shown is not None
        self.update_volume_status()
        self._volume_poll.start()

        def work(report: Any) -> None:
            try:
                shown.annotator.embed(
                    lambda: self._z,
                    progress=report,
                    should_stop=lambda: self.session.embeddings.shown_volume is not shown,
                )
            except StoppedError:  # another image was shown, or the model changed: nothing to report
                return

        def done(_: None) -> None:
            self._volume_poll.stop()
            self.update_volume_status()
            if self.session.embeddings.shown_volume is shown and shown.annotator.features.complete:
                self.embedded.emit(shown.name)

        self.jobs.run(f"Embedding {shown.annotator.shape.n_slices} slices of {shown.name}", work, done)

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
        if self.session.embeddings.shown is not None or self.session.embeddings.shown_volume is not None:
            self.compute_embeddings()

    def compute_embeddings(self) -> None:
        """Compute (or fetch from the cache) the shown image's embeddings on a worker thread; a volume's
        slice by slice, the slice on screen first."""
        if self.session.embeddings.shown_volume is not None:
            self._embed_volume()
            return
        shown = self.session.embeddings.shown
        if shown is None:
            return
        with user_errors() as outcome:
            key = self.session.embeddings.key(shown.image)
        if outcome.failed:
            return
        cached = key in self.session.embeddings.cache
        self.embedding_status.value = "Loading cached embeddings..." if cached else "Computing embeddings..."

        def done(result: tuple[EmbeddingKey, dict] | None) -> None:
            if result is not None and self.session.embeddings.shown is shown:
                self.embedding_status.value = f"Embeddings ready ({'cached' if cached else 'computed'})."
                self.embedded.emit(shown.name)

        self.jobs.run(
            f"Embedding {shown.name}",
            lambda report: self.session.embeddings.compute_shown(progress=report),
            done,
        )

    def require_embeddings(self) -> dict:
        """The shown image's embeddings.

        Raises
        ------
        SamPeftError
            No model, no image, an image SAM cannot take, or embeddings still being computed.
        """
        if self.session.model.loaded is None:
            raise SamPeftError("Load a model first (Segment widget: 'Load model').")
        layer = self.image_layer
        if layer is None:
            raise SamPeftError("Pick an image layer first.")
        check_image(layer.data, layer.rgb)  # says what is wrong with a bad image
        embeddings = self.embeddings
        if embeddings is None:
            raise SamPeftError(
                "The embeddings are still being computed: wait for the progress bar, then try again."
            )
        return embeddings

    def show_failure(self, message: str) -> None:
        """Say that background work failed, and why (it stays after the notification is gone)."""
        show_text(self.embedding_status, f"Failed: {message}")

    def disconnect(self) -> None:
        """Stop observing the session (the widget is closing)."""
        self.session.model.base_changed.disconnect(self._model_changed)
        self.session.model.adapter_changed.disconnect(self._model_changed)
        self.viewer.dims.events.current_step.disconnect(self._slice_changed)
        self._volume_poll.stop()
