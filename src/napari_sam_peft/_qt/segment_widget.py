"""The "Segment" dock widget: prompt-based annotation with SAM, as micro_sam users know it.

Layers (micro_sam's names): ``point_prompts`` (positive/negative points, ``T`` toggles),
``prompts`` (boxes), ``current_object``, ``committed_objects`` and ``auto_segmentation``.
Keys: ``S`` segment, ``C`` commit, ``Shift+C`` clear prompts, ``U`` undo the last commit,
``T`` toggle the point label, ``N`` / ``Shift+N`` next / previous image.

The widget is thin: models, adapters and embeddings live in the viewer's
:class:`~napari_sam_peft.session.AnnotatorSession`; slow work runs on worker threads with
a napari progress bar; every error a user can cause becomes a napari notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from napari_sam_peft._qt.progress import ProgressRelay
from napari_sam_peft._qt.sessions import session_for
from napari_sam_peft.core.devices import DEVICE_CHOICES
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.images import check_image
from napari_sam_peft.core.models import DEMO_MODEL_NAME, load_model, registry_model_names
from napari_sam_peft.core.prompting import ObjectPrompts, box_from_corners, split_into_objects

POINT_LABELS = ("positive", "negative")
POINT_COLORS = ["#00FF00", "#FF0000"]
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


@dataclass
class Commit:
    """One commit, enough to undo it."""

    object_ids: list[int]
    indices: tuple[np.ndarray, ...]
    previous: np.ndarray
    prompts: list[ObjectPrompts] = field(default_factory=list)


@dataclass
class ImageAnnotations:
    """What the user committed on one image, and how to undo it."""

    labels: np.ndarray
    history: list[Commit] = field(default_factory=list)


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

        self.model_choice = ComboBox(
            label="model", choices=[DEMO_MODEL_NAME, *registry_model_names()], value=DEMO_MODEL_NAME
        )
        self.model_file = FileEdit(label="or file", mode="r", filter="*.pth *.pt *.safetensors")
        self.device_choice = ComboBox(label="device", choices=list(DEVICE_CHOICES), value="auto")
        self.load_button = PushButton(text="Load model")
        self.adapter_file = FileEdit(label="adapter", mode="r", filter="*.safetensors")
        self.attach_button = PushButton(text="Attach adapter")
        self.detach_button = PushButton(text="Use base model")
        self.model_status = Label(value="No model loaded.")
        self.image_choice = ComboBox(label="image", choices=self._image_layer_names)
        self.previous_button = PushButton(text="< Previous [Shift+N]")
        self.next_button = PushButton(text="Next [N] >")
        self.folder = FileEdit(label="open folder", mode="d")
        self.batch_mode = CheckBox(text="batch mode (one object per box / positive point)", value=False)
        self.segment_button = PushButton(text="Segment [S]")
        self.commit_button = PushButton(text="Commit [C]")
        self.clear_button = PushButton(text="Clear prompts [Shift+C]")
        self.undo_button = PushButton(text="Undo last commit [U]")
        self.auto_button = PushButton(text="Automatic segmentation")
        self.commit_auto_button = PushButton(text="Commit automatic objects")
        self.embedding_status = Label(value="")
        self.extend(
            [
                self.model_choice,
                self.model_file,
                self.device_choice,
                self.load_button,
                self.adapter_file,
                Container(widgets=[self.attach_button, self.detach_button], layout="horizontal", labels=False),
                self.model_status,
                self.image_choice,
                Container(widgets=[self.previous_button, self.next_button], layout="horizontal", labels=False),
                self.folder,
                self.embedding_status,
                self.batch_mode,
                Container(widgets=[self.segment_button, self.commit_button], layout="horizontal", labels=False),
                Container(widgets=[self.clear_button, self.undo_button], layout="horizontal", labels=False),
                Container(widgets=[self.auto_button, self.commit_auto_button], layout="horizontal", labels=False),
            ]
        )
        self._create_layers()
        self._connect()
        self._bind_keys()
        if self.image_choice.value is not None:
            self._image_selected(self.image_choice.value)
        self._update_model_status()

    # ------------------------------------------------------------------ setup
    def _image_layer_names(self, *_) -> list[str]:
        return [layer.name for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)]

    def _create_layers(self) -> None:
        viewer = self.viewer
        if "point_prompts" not in viewer.layers:
            viewer.add_points(
                name="point_prompts",
                property_choices={"label": list(POINT_LABELS)},
                border_color="label",
                border_color_cycle=POINT_COLORS,
                symbol="o",
                face_color="transparent",
                border_width=0.5,
                size=12,
                ndim=2,
            )
            viewer.layers["point_prompts"].border_color_mode = "cycle"
        if "prompts" not in viewer.layers:
            viewer.add_shapes(name="prompts", face_color="transparent", edge_color="green", edge_width=2, ndim=2)
        self.point_layer = viewer.layers["point_prompts"]
        self.box_layer = viewer.layers["prompts"]

    def _labels_layer(self, name: str, shape: tuple[int, int]) -> napari.layers.Labels:
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if layer.data.shape != shape:
                layer.data = np.zeros(shape, dtype=np.uint32)
            return layer
        layer = self.viewer.add_labels(np.zeros(shape, dtype=np.uint32), name=name)
        # Keep prompts on top so they stay clickable.
        for prompt_layer in (self.box_layer, self.point_layer):
            self.viewer.layers.move(self.viewer.layers.index(prompt_layer), len(self.viewer.layers))
        return layer

    def _connect(self) -> None:
        self.viewer.layers.events.inserted.connect(self._refresh_image_choices)
        self.viewer.layers.events.removed.connect(self._refresh_image_choices)
        self.load_button.changed.connect(self.load_model)
        self.attach_button.changed.connect(lambda: self.attach_adapter(self.adapter_file.value))
        self.detach_button.changed.connect(lambda: self.attach_adapter(None))
        self.image_choice.changed.connect(self._image_selected)
        self.previous_button.changed.connect(lambda: self.step_image(-1))
        self.next_button.changed.connect(lambda: self.step_image(+1))
        self.folder.changed.connect(lambda: self.open_folder(self.folder.value))
        self.segment_button.changed.connect(self.segment)
        self.commit_button.changed.connect(self.commit)
        self.clear_button.changed.connect(self.clear_prompts)
        self.undo_button.changed.connect(self.undo_commit)
        self.auto_button.changed.connect(self.run_automatic)
        self.commit_auto_button.changed.connect(self.commit_automatic)
        self.session.model_changed.connect(self._model_changed)
        self.session.adapter_changed.connect(self._adapter_changed)

    def _bind_keys(self) -> None:
        actions = {
            "s": self.segment,
            "c": self.commit,
            "Shift-C": self.clear_prompts,
            "u": self.undo_commit,
            "t": self.toggle_point_label,
            "n": lambda: self.step_image(+1),
            "Shift-N": lambda: self.step_image(-1),
        }
        # The prompt layers have their own 's' etc. (napari#7302): bind there too.
        for target in (self.viewer, self.point_layer, self.box_layer):
            for key, action in actions.items():
                target.bind_key(key, _key_handler(action), overwrite=True)

    # ------------------------------------------------------------------ model
    def load_model(self) -> None:
        """Load the chosen model on a worker thread (downloads can take minutes)."""
        file = self.model_file.value
        name = str(file) if file and Path(file).is_file() else self.model_choice.value
        device = self.device_choice.value
        self.model_status.value = f"Loading {name}..."

        @thread_worker(progress={"desc": f"Loading model {name}"})
        def work():
            return load_model(name, device=device)

        # The session (and its signals) change on the main thread only.
        self._run(work(), on_return=self.session.set_model)

    def attach_adapter(self, path) -> None:
        try:
            if path is not None and (not path or not Path(path).is_file()):
                raise SamPeftError("Choose an adapter file (.safetensors) first.")
            self.session.set_adapter(path)
        except SamPeftError as err:
            show_error(str(err))

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
        model = self.session.model
        if model is None:
            self.model_status.value = "No model loaded."
            return
        adapter = self.session.adapter
        active = "base model" if adapter is None else f"adapter {adapter.spec.describe()} [{adapter.identity[:8]}]"
        self.model_status.value = f"{model.identity.name} on {model.device.type}, {active}"

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
        self.session.model_changed.disconnect(self._model_changed)
        self.session.adapter_changed.disconnect(self._adapter_changed)

    @property
    def image_layer(self) -> napari.layers.Image | None:
        if self._image_name is None or self._image_name not in self.viewer.layers:
            return None
        return self.viewer.layers[self._image_name]

    def _image_selected(self, name: str | None) -> None:
        if name == self._image_name:
            return
        self._store_current_annotations()
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
        saved = self.annotations.get(name)
        committed = self._labels_layer("committed_objects", shape)
        committed.data = saved.labels if saved is not None else np.zeros(shape, dtype=np.uint32)
        self._labels_layer("current_object", shape).data = np.zeros(shape, dtype=np.uint32)
        if self.session.model is not None:
            self.compute_embeddings()
        else:
            self.embedding_status.value = "Load a model to compute embeddings."

    def _store_current_annotations(self) -> None:
        if self._image_name is None or "committed_objects" not in self.viewer.layers:
            return
        labels = self.viewer.layers["committed_objects"].data
        entry = self.annotations.setdefault(self._image_name, ImageAnnotations(labels=labels))
        entry.labels = labels

    def step_image(self, step: int) -> None:
        names = self._image_layer_names()
        if not names:
            return
        current = names.index(self._image_name) if self._image_name in names else -1
        self.image_choice.value = names[(current + step) % len(names)]

    def open_folder(self, folder) -> None:
        """Open every image file of a folder as an image layer (an image series)."""
        import imageio.v3 as iio

        folder = Path(folder)
        files = (
            sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        )
        if not files:
            show_error(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {folder}.")
            return
        for path in files:
            self.viewer.add_image(iio.imread(path), name=path.stem, visible=False)
        self.image_choice.value = files[0].stem

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

        relay = ProgressRelay(f"Embedding {name}")

        @thread_worker
        def work():
            return self.session.compute_embeddings(image, layer.rgb, progress=relay.report)

        def done(result):
            relay.close()
            key, embeddings = result
            if self._image_name == name:
                self.embedding_key, self.embeddings = key, embeddings
                self.embedding_status.value = f"Embeddings ready ({'cached' if cached else 'computed'})."

        self._run(work(), on_return=done)

    def _run(self, worker, on_return) -> None:
        worker.returned.connect(_unless_closed(on_return))
        worker.errored.connect(_unless_closed(self._worker_failed))
        self.active_workers.add(worker)
        worker.finished.connect(lambda: self.active_workers.discard(worker))
        worker.start()

    def _worker_failed(self, err: BaseException) -> None:
        ProgressRelay.close_all()
        message = str(err) if isinstance(err, SamPeftError) else f"{type(err).__name__}: {err}"
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
        points = np.asarray(self.point_layer.data)[:, -2:] if len(self.point_layer.data) else np.zeros((0, 2))
        labels = np.array([1 if lab == "positive" else 0 for lab in self.point_layer.properties.get("label", [])])
        boxes = [
            box_from_corners(shape)
            for shape, kind in zip(self.box_layer.data, self.box_layer.shape_type, strict=True)
            if kind == "rectangle"
        ]
        return split_into_objects(points, labels, boxes, batch=self.batch_mode.value)

    def toggle_point_label(self) -> None:
        current = self.point_layer.current_properties
        label = current["label"][0] if len(current.get("label", [])) else "positive"
        current["label"] = np.array(["negative" if label == "positive" else "positive"])
        self.point_layer.current_properties = current
        self.point_layer.refresh_colors()

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
        self._commit_labels(self.viewer.layers["current_object"].data, self._pending_prompts, source="prompts")
        self.clear_prompts()

    def commit_automatic(self) -> None:
        """Commit every object left in ``auto_segmentation`` (after the user deleted or fixed some)."""
        if "auto_segmentation" not in self.viewer.layers or not self.viewer.layers["auto_segmentation"].data.any():
            show_info("No automatic objects to commit: run 'Automatic segmentation' first.")
            return
        layer = self.viewer.layers["auto_segmentation"]
        proposal = getattr(self, "_auto_proposal", None)
        sources = []
        for obj in (int(i) for i in np.unique(layer.data) if i != 0):
            unchanged = proposal is not None and np.array_equal(layer.data == obj, proposal == obj)
            sources.append("automatic" if unchanged else "automatic-edited")
        self._commit_labels(layer.data, [], source=sources)
        layer.data = np.zeros_like(layer.data)

    def _commit_labels(
        self, source_labels: np.ndarray, prompts: list[ObjectPrompts], source: str | list[str]
    ) -> None:
        committed = self.viewer.layers["committed_objects"]
        labels = committed.data
        ids = [int(i) for i in np.unique(source_labels) if i != 0]
        next_id = int(labels.max()) + 1
        touched = source_labels != 0
        indices = np.nonzero(touched)
        previous = labels[indices].copy()
        new_ids = []
        for offset, old in enumerate(ids):
            labels[source_labels == old] = next_id + offset
            new_ids.append(next_id + offset)
        committed.data = labels
        committed.refresh()
        entry = self.annotations.setdefault(self._image_name, ImageAnnotations(labels=labels))
        entry.labels = labels
        entry.history.append(Commit(new_ids, indices, previous, list(prompts)))
        self.session.objects_committed.emit(
            {
                "image_layer": self._image_name,
                "object_ids": new_ids,
                "prompts": list(prompts),
                "sources": source if isinstance(source, list) else [source] * len(new_ids),
            }
        )

    def undo_commit(self) -> None:
        """Undo the last commit on the current image."""
        entry = self.annotations.get(self._image_name)
        if entry is None or not entry.history:
            show_info("Nothing to undo on this image.")
            return
        last = entry.history.pop()
        committed = self.viewer.layers["committed_objects"]
        labels = committed.data
        labels[last.indices] = last.previous
        committed.data = labels
        committed.refresh()
        self.session.objects_uncommitted.emit({"image_layer": self._image_name, "object_ids": last.object_ids})

    # --------------------------------------------------------------- automatic
    def run_automatic(self) -> None:
        """Pre-annotate the whole image into ``auto_segmentation`` on a worker thread."""
        try:
            embeddings = self._require_embeddings()
            image = check_image(self.image_layer.data, self.image_layer.rgb)
        except SamPeftError as err:
            show_error(str(err))
            return

        relay = ProgressRelay("Automatic segmentation")

        @thread_worker
        def work():
            return self.session.automatic(image, embeddings, progress=relay.report)

        def done(segmentation):
            relay.close()
            layer = self._labels_layer("auto_segmentation", segmentation.shape)
            layer.data = segmentation
            self._auto_proposal = segmentation.copy()
            n = int(len(np.unique(segmentation)) - 1)
            show_info(
                f"Automatic segmentation found {n} objects: delete or fix them, then 'Commit automatic objects'."
            )

        self._run(work(), on_return=done)


def _unless_closed(callback):
    """Run a worker's callback unless the viewer closed the widget while the worker ran."""

    def guarded(*args):
        try:
            callback(*args)
        except RuntimeError as err:
            if "has been deleted" not in str(err):
                raise

    return guarded


def _key_handler(action):
    def handler(*_):
        action()

    return handler
