"""The "Segment" dock widget: prompt-based annotation with SAM, as micro_sam users know it.

Layers and keys follow micro_sam (see :mod:`.prompt_layers`): ``S`` segment, ``C`` commit,
``Shift+C`` clear prompts, ``U`` undo the last commit, ``T`` toggle the point label,
``N`` / ``Shift+N`` next / previous image.

Every commit, undo and hand correction of ``committed_objects`` (brush, eraser, fill) is
recorded in the session's annotation store, whichever other docks are open; the widget
shows where. An image the store already holds opens with its objects.

The widget is thin: models, adapters, embeddings and the store live in the viewer's
:class:`~napari_sam_peft.session.AnnotatorSession`; slow work runs on worker threads with
a napari progress bar; every error a user can cause becomes a napari notification.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from napari_sam_peft._qt import prompt_layers
from napari_sam_peft._qt.automatic_controls import AutomaticControls
from napari_sam_peft._qt.background import run_in_background
from napari_sam_peft._qt.dock_layout import fit_to_dock, full_width, on_click, show_text, wrapping
from napari_sam_peft._qt.image_series import image_layer_names, open_image_folder
from napari_sam_peft._qt.model_controls import ModelControls
from napari_sam_peft._qt.progress import ProgressRelay
from napari_sam_peft._qt.sessions import default_store_path, session_for
from napari_sam_peft.core.annotation.commits import ImageAnnotations, prompt_record
from napari_sam_peft.core.annotation.images import check_image
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.errors import SamPeftError

PAINT_SETTLE_MS = 400  # record hand corrections once the user pauses painting


class SegmentWidget(Container):
    """Dock widget: pick model, adapter and image; segment with prompts; commit objects."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.annotations: dict[str, ImageAnnotations] = {}
        self.embeddings: dict | None = None
        self.embedding_key = None
        self._image_name: str | None = None
        self._pending_prompts: list[ObjectPrompts] = []
        self.active_workers: set = set()
        self._paint_timer = QTimer(self.native)
        self._paint_timer.setSingleShot(True)
        self._paint_timer.setInterval(PAINT_SETTLE_MS)
        self._paint_timer.timeout.connect(self.record_current)
        self._watched_labels = None

        self.model_controls = ModelControls(self.session, self._run)
        for name in ("model_choice", "load_button", "adapter_file", "attach_button", "detach_button", "status"):
            setattr(self, "model_status" if name == "status" else name, getattr(self.model_controls, name))
        self.image_choice = ComboBox(label="image", choices=lambda *_: image_layer_names(self.viewer))
        self.previous_button = PushButton(text="< Previous", tooltip="Previous image [Shift+N]")
        self.next_button = PushButton(text="Next >", tooltip="Next image [N]")
        self.folder = FileEdit(label="folder", mode="d", tooltip="Open every image of a folder as an image series")
        self.batch_mode = CheckBox(
            text="batch mode", value=False, tooltip="One object per box and per positive point"
        )
        self.segment_button = PushButton(text="Segment [S]")
        self.commit_button = PushButton(text="Commit [C]")
        self.clear_button = PushButton(text="Clear [Shift+C]", tooltip="Clear the prompts and the current object")
        self.undo_button = PushButton(text="Undo [U]", tooltip="Undo the last commit on this image")
        self.automatic = AutomaticControls(self)
        self.auto_button, self.commit_auto_button = self.automatic.run_button, self.automatic.commit_button
        self.embedding_status = wrapping(Label(value=""))
        self.store_status = wrapping(Label(value=""))

        def row(*widgets):
            return Container(widgets=list(widgets), layout="horizontal", labels=False)

        self.extend(
            [
                *self.model_controls.widgets,
                self.image_choice,
                row(self.previous_button, self.next_button),
                self.folder,
                self.embedding_status,
                self.batch_mode,
                row(self.segment_button, self.commit_button),
                row(self.clear_button, self.undo_button),
                row(self.auto_button, self.commit_auto_button),
                self.store_status,
            ]
        )
        self.point_layer, self.box_layer = prompt_layers.create_prompt_layers(napari_viewer)
        self._rows = [w for w in self if isinstance(w, Container)]
        self._connect()
        self.keys = prompt_layers.KeyBindings(
            napari_viewer,
            {
                "s": self.segment,
                "c": self.commit,
                "Shift-C": self.clear_prompts,
                "u": self.undo_commit,
                "t": lambda: prompt_layers.toggle_point_label(self.point_layer),
                "n": lambda: self.step_image(+1),
                "Shift-N": lambda: self.step_image(-1),
            },
        )
        if self.image_choice.value is not None:
            self._image_selected(self.image_choice.value)
        self._update_model_status()
        self._update_store_status()
        full_width(self.model_status, self.embedding_status, self.store_status, *self._rows)
        fit_to_dock(self, "Segment")

    # ------------------------------------------------------------------ setup
    def _connect(self) -> None:
        self.viewer.layers.events.inserted.connect(self._refresh_image_choices)
        self.viewer.layers.events.removed.connect(self._refresh_image_choices)
        self.image_choice.changed.connect(self._image_selected)
        on_click(self.previous_button, lambda: self.step_image(-1))
        on_click(self.next_button, lambda: self.step_image(+1))
        self.folder.changed.connect(lambda: self.open_folder(self.folder.value))
        on_click(self.segment_button, self.segment)
        on_click(self.commit_button, self.commit)
        on_click(self.clear_button, self.clear_prompts)
        on_click(self.undo_button, self.undo_commit)
        self.session.model_changed.connect(self._model_changed)
        self.session.adapter_changed.connect(self._adapter_changed)
        self.session.store_changed.connect(self._update_store_status)
        self.session.store_updated.connect(self._update_store_status)
        self.session.flush_requested.connect(self.record_current)

    # ------------------------------------------------------------------ model
    def _model_changed(self, loaded) -> None:
        self._update_model_status()
        self.embeddings = None
        if self._image_name is not None:
            self.compute_embeddings()

    def _adapter_changed(self, adapter) -> None:
        self._update_model_status()
        # Embeddings depend on the adapter: recompute (or fetch from the cache) for the current image.
        self.embeddings = None
        if self._image_name is not None:
            self.compute_embeddings()

    def _update_model_status(self) -> None:
        self.model_controls.update_status()

    def _update_store_status(self, *_) -> None:
        text, path = self.session.store_description()
        show_text(self.store_status, text, path)

    # ------------------------------------------------------------------ images
    def _refresh_image_choices(self, *_) -> None:
        try:
            self.image_choice.reset_choices()
        except RuntimeError:  # the viewer is closing and has already deleted this widget
            self._disconnect()

    def _disconnect(self) -> None:
        for signal, slot in (
            (self.viewer.layers.events.inserted, self._refresh_image_choices),
            (self.viewer.layers.events.removed, self._refresh_image_choices),
        ):
            signal.disconnect(slot)
        self.keys.disconnect()
        self.session.model_changed.disconnect(self._model_changed)
        self.session.adapter_changed.disconnect(self._adapter_changed)
        self.session.store_changed.disconnect(self._update_store_status)
        self.session.store_updated.disconnect(self._update_store_status)
        self.session.flush_requested.disconnect(self.record_current)

    @property
    def image_layer(self) -> napari.layers.Image | None:
        if self._image_name is None or self._image_name not in self.viewer.layers:
            return None
        return self.viewer.layers[self._image_name]

    def _image_selected(self, name: str | None) -> None:
        if name == self._image_name:
            return
        if self._paint_timer.isActive():
            self.record_current()  # corrections on the image we leave
        self._keep_current_annotations()
        self._image_name = name
        self.session.current_image = name
        self.embeddings = None
        self.clear_prompts()
        layer = self.image_layer
        if layer is None:
            return
        for other in self.viewer.layers:
            if isinstance(other, napari.layers.Image):
                other.visible = other is layer
        try:
            image = check_image(layer.data, layer.rgb)
        except SamPeftError as err:
            self.embedding_status.value = "This image cannot be segmented."
            show_error(str(err))
            return
        shape = image.shape[:2]
        if self.session.store is None:
            self.session.default_store_path = default_store_path(self.viewer)
        saved = self.annotations.get(name)
        if saved is None:
            restored = self._restore(image)
            saved = self.annotations[name] = ImageAnnotations(
                restored if restored is not None else np.zeros(shape, dtype=np.uint32)
            )
        committed = prompt_layers.labels_layer(self.viewer, "committed_objects", shape)
        committed.data = saved.labels
        self._watch_corrections(committed)
        prompt_layers.labels_layer(self.viewer, "current_object", shape).data = np.zeros(shape, dtype=np.uint32)
        size = prompt_layers.point_size_for(shape)
        self.point_layer.current_size = size
        self._update_store_status()
        if self.session.model is not None:
            self.compute_embeddings()
        else:
            self.embedding_status.value = "Load a model to compute embeddings."

    def _restore(self, image: np.ndarray) -> np.ndarray | None:
        try:
            labels = self.session.restore_labels(image)
        except (SamPeftError, OSError) as err:
            show_error(f"Could not read this image's committed objects from the store: {err}")
            return None
        if labels is not None:
            show_info(f"{int(len(np.unique(labels)) - 1)} committed objects of this image loaded from the store.")
        return labels

    def _watch_corrections(self, layer) -> None:
        if self._watched_labels is layer:
            return
        layer.events.paint.connect(lambda _event: self._paint_timer.start())
        self._watched_labels = layer

    def _keep_current_annotations(self) -> None:
        if self._image_name is None or "committed_objects" not in self.viewer.layers:
            return
        entry = self.annotations.get(self._image_name)
        if entry is not None:
            entry.labels = self.viewer.layers["committed_objects"].data

    def step_image(self, step: int) -> None:
        names = image_layer_names(self.viewer)
        if names:
            current = names.index(self._image_name) if self._image_name in names else -1
            self.image_choice.value = names[(current + step) % len(names)]

    def open_folder(self, folder) -> None:
        """Open every image file of a folder as an image layer (an image series)."""
        first = open_image_folder(self.viewer, folder)
        if first is not None:
            self.image_choice.value = first

    # -------------------------------------------------------------- embeddings
    def compute_embeddings(self) -> None:
        """Compute (or fetch from the cache) the current image's embeddings on a worker thread."""
        layer = self.image_layer
        if layer is None:
            return
        try:
            image = check_image(layer.data, layer.rgb)
            key = self.session.embedding_key(image)
        except SamPeftError as err:
            show_error(str(err))
            return
        cached = key in self.session.cache
        self.embedding_status.value = "Loading cached embeddings..." if cached else "Computing embeddings..."
        name = layer.name
        rgb = layer.rgb
        relay = ProgressRelay(f"Embedding {name}")

        @thread_worker
        def work():
            return self.session.compute_embeddings(image, rgb, progress=relay.report)

        def done(result):
            relay.close()
            key, embeddings = result
            if self._image_name == name:
                self.embedding_key, self.embeddings = key, embeddings
                self.embedding_status.value = f"Embeddings ready ({'cached' if cached else 'computed'})."

        self._run(work(), on_return=done)

    def _run(self, worker, on_return) -> None:
        run_in_background(worker, on_return, self._worker_failed, self.active_workers)

    def _worker_failed(self, err: BaseException) -> None:
        ProgressRelay.close_all()
        if isinstance(err, SamPeftError):
            message = str(err)
        else:
            message = f"Unexpected error: {type(err).__name__}: {err or 'no message'}"
        self.embedding_status.value = "Failed: see the notification."
        self._update_model_status()
        show_error(message)

    def _require_embeddings(self) -> dict:
        if self.session.model is None:
            raise SamPeftError("Load a model first (Segment widget: 'Load model').")
        if self.image_layer is None:
            raise SamPeftError("Pick an image layer first.")
        check_image(self.image_layer.data, self.image_layer.rgb)  # says what is wrong with a bad image
        if self.embeddings is None:
            raise SamPeftError(
                "The embeddings are still being computed: wait for the progress bar, then try again."
            )
        return self.embeddings

    # ------------------------------------------------------------------ prompts
    def current_prompts(self) -> list[ObjectPrompts]:
        return prompt_layers.read_prompts(self.point_layer, self.box_layer, self.batch_mode.value)

    def segment(self) -> None:
        """Segment the current object(s) from the prompts into ``current_object``."""
        try:
            embeddings = self._require_embeddings()
            objects = self.current_prompts()
            masks = self.session.segment(embeddings, objects)
        except SamPeftError as err:
            show_error(str(err))
            return
        layer = self.viewer.layers["current_object"]
        result = np.zeros(layer.data.shape, dtype=np.uint32)
        for index, mask in enumerate(masks, start=1):
            result[mask] = index
        layer.data = result
        self._pending_prompts = objects
        layer.refresh()

    def clear_prompts(self) -> None:
        self.point_layer.data = np.zeros((0, 2))
        self.box_layer.data = []
        if "current_object" in self.viewer.layers:
            layer = self.viewer.layers["current_object"]
            layer.data = np.zeros_like(layer.data)
        self._pending_prompts = []

    # ------------------------------------------------------------------ commits
    def commit(self) -> None:
        """Commit ``current_object`` into ``committed_objects`` under new ids, and clear the prompts."""
        if "current_object" not in self.viewer.layers or not self.viewer.layers["current_object"].data.any():
            show_info("Nothing to commit: segment an object first (S).")
            return
        current = self.viewer.layers["current_object"].data
        old_ids = [int(i) for i in np.unique(current) if i != 0]
        new_ids = self._commit_labels(current)
        prompts = {
            new: prompt_record(self._pending_prompts[old - 1])
            for old, new in zip(old_ids, new_ids, strict=True)
            if old - 1 < len(self._pending_prompts)
        }
        self.record_current(prompts=prompts, sources=dict.fromkeys(new_ids, "prompts"))
        self.clear_prompts()

    def _commit_labels(self, source_labels: np.ndarray) -> list[int]:
        committed = self.viewer.layers["committed_objects"]
        labels = committed.data
        entry = self.annotations.setdefault(self._image_name, ImageAnnotations(labels=labels))
        new_ids = entry.history.commit(labels, source_labels)
        entry.labels = labels
        committed.data = labels
        committed.refresh()
        return new_ids

    def undo_commit(self) -> None:
        """Undo the last commit on the current image."""
        entry = self.annotations.get(self._image_name)
        committed = self.viewer.layers["committed_objects"] if "committed_objects" in self.viewer.layers else None
        if entry is None or committed is None or entry.history.undo(committed.data) is None:
            show_info("Nothing to undo on this image.")
            return
        committed.refresh()
        self.record_current()

    def record_current(self, prompts: dict | None = None, sources: dict | None = None) -> None:
        """Make the store hold what ``committed_objects`` shows for the current image."""
        self._paint_timer.stop()
        layer = self.image_layer
        if layer is None or "committed_objects" not in self.viewer.layers:
            return
        try:
            self.session.record(
                np.asarray(layer.data),
                self.viewer.layers["committed_objects"].data,
                name=layer.name,
                prompts=prompts,
                sources=sources,
            )
        except (SamPeftError, OSError) as err:
            show_error(f"The committed objects were not recorded as training data: {err}")
