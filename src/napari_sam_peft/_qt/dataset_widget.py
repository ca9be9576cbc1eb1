"""The "Dataset" dock widget: the annotation store behind the Segment widget.

Every object committed in the Segment widget is recorded in the store with its prompts;
undoing a commit removes it again. The widget shows the store's images, objects and split,
lets the user move an image between train and validation, remove an object or an image
from the training data, and import existing annotations from an image + labels layer pair.
"""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, Table
from napari.utils.notifications import show_error, show_info

from napari_sam_peft._qt.sessions import session_for
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.store import SPLITS, STORE_SUFFIX, AnnotationStore

DEFAULT_STORE_NAME = f"annotations{STORE_SUFFIX}"


def default_store_path(viewer: napari.Viewer) -> Path:
    """One store per image folder: next to the first image layer opened from a file, else in ~/napari-sam-peft."""
    for layer in viewer.layers:
        source = getattr(getattr(layer, "source", None), "path", None)
        if isinstance(layer, napari.layers.Image) and source:
            folder = Path(source)
            return (folder if folder.is_dir() else folder.parent) / DEFAULT_STORE_NAME
    return Path.home() / "napari-sam-peft" / DEFAULT_STORE_NAME


class DatasetWidget(Container):
    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.store: AnnotationStore | None = None
        # (image layer name, label id in committed_objects) -> store object id, to undo and remove
        self.recorded: dict[tuple[str, int], str] = {}

        self.store_path = FileEdit(label="store", mode="d", value=default_store_path(napari_viewer))
        self.open_button = PushButton(text="Open / create store")
        self.summary = Label(value="No store open: committed objects are not recorded yet.")
        self.table = Table(value={"data": [], "index": [], "columns": ["image", "split", "objects"]})
        self.store_image = ComboBox(label="stored image", choices=self._stored_image_choices)
        self.split = ComboBox(label="split", choices=list(SPLITS), value="train")
        self.split_button = PushButton(text="Set split")
        self.remove_image_button = PushButton(text="Remove image from training data")
        self.remove_object_button = PushButton(text="Remove selected object (committed_objects label)")
        self.import_image = ComboBox(label="import image", choices=self._layers_of(napari.layers.Image))
        self.import_labels = ComboBox(label="with labels", choices=self._layers_of(napari.layers.Labels))
        self.import_button = PushButton(text="Add image + labels to the store")
        self.extend(
            [
                self.store_path,
                self.open_button,
                self.summary,
                self.table,
                self.store_image,
                Container(widgets=[self.split, self.split_button], layout="horizontal", labels=False),
                self.remove_image_button,
                self.remove_object_button,
                self.import_image,
                self.import_labels,
                self.import_button,
            ]
        )
        self.open_button.changed.connect(lambda: self.open_store(self.store_path.value))
        self.split_button.changed.connect(self._set_split)
        self.remove_image_button.changed.connect(self._remove_image)
        self.remove_object_button.changed.connect(self.remove_selected_object)
        self.import_button.changed.connect(self._import_layers)
        self.viewer.layers.events.inserted.connect(self._refresh_layer_choices)
        self.viewer.layers.events.removed.connect(self._refresh_layer_choices)
        self.session.objects_committed.connect(self._record_commit)
        self.session.objects_uncommitted.connect(self._record_uncommit)

    # ------------------------------------------------------------------ store
    def open_store(self, path) -> AnnotationStore | None:
        path = Path(path)
        try:
            if not path.name.endswith(STORE_SUFFIX):
                path = path / DEFAULT_STORE_NAME
            self.store = AnnotationStore(path) if path.exists() else AnnotationStore.create(path)
        except (SamPeftError, OSError) as err:
            show_error(str(err))
            return None
        self.store_path.value = path
        self.session.set_store(self.store)
        self.refresh()
        return self.store

    def _require_store(self) -> AnnotationStore:
        if self.store is None:
            self.open_store(self.store_path.value)
        if self.store is None:
            raise SamPeftError("No annotation store is open: choose a folder in the Dataset widget.")
        return self.store

    def refresh(self) -> None:
        if self.store is None:
            return
        snapshot = self.store.snapshot()
        info = snapshot.info()
        self.session.store_updated.emit(self.store)
        self.summary.value = (
            f"{info['images']} images, {info['objects']} objects "
            f"(train {info['train_objects']}, val {info['val_objects']}); snapshot {info['snapshot'][:8]}"
        )
        self.table.value = {
            "data": [[i.name or i.image_id[:8], i.split, len(i.objects)] for i in snapshot.images],
            "index": [str(n) for n in range(1, len(snapshot.images) + 1)],
            "columns": ["image", "split", "objects"],
        }
        self.store_image.reset_choices()

    def _stored_image_choices(self, *_) -> list[tuple[str, str]]:
        if self.store is None:
            return []
        return [(i.name or i.image_id[:8], i.image_id) for i in self.store.snapshot().images]

    def _layers_of(self, kind):
        def choices(*_):
            return [layer.name for layer in self.viewer.layers if isinstance(layer, kind)]

        return choices

    def _refresh_layer_choices(self, *_) -> None:
        try:
            self.import_image.reset_choices()
            self.import_labels.reset_choices()
        except RuntimeError:  # the viewer is closing
            pass

    # ------------------------------------------------------------ recording
    def _record_commit(self, event: dict) -> None:
        try:
            store = self._require_store()
            layer = self.viewer.layers[event["image_layer"]]
            labels = self.viewer.layers["committed_objects"].data
            image_id = store.add_image(np.asarray(layer.data), name=layer.name)
            prompts = event.get("prompts") or []
            for index, label_id in enumerate(event["object_ids"]):
                object_prompts = prompts[index] if index < len(prompts) else None
                record = {}
                if object_prompts is not None:
                    record = {
                        "points": object_prompts.points.tolist(),
                        "labels": object_prompts.labels.tolist(),
                        "box": None if object_prompts.box is None else object_prompts.box.tolist(),
                    }
                object_id = store.add_object(
                    image_id, labels == label_id, prompts=record, source=event["sources"][index]
                )
                self.recorded[(layer.name, label_id)] = object_id
        except (SamPeftError, KeyError) as err:
            show_error(f"The commit was not recorded in the store: {err}")
            return
        self.refresh()

    def _record_uncommit(self, event: dict) -> None:
        if self.store is None:
            return
        for label_id in event["object_ids"]:
            object_id = self.recorded.pop((event["image_layer"], label_id), None)
            if object_id is not None:
                self.store.remove_object(object_id)
        self.refresh()

    # ------------------------------------------------------------ actions
    def _set_split(self) -> None:
        try:
            if self.store_image.value is None:
                raise SamPeftError("Pick a stored image first.")
            self._require_store().set_split(self.store_image.value, self.split.value)
        except SamPeftError as err:
            show_error(str(err))
        self.refresh()

    def _remove_image(self) -> None:
        try:
            if self.store_image.value is None:
                raise SamPeftError("Pick a stored image first.")
            self._require_store().remove_image(self.store_image.value)
        except SamPeftError as err:
            show_error(str(err))
        self.refresh()

    def remove_selected_object(self) -> None:
        """Remove the object under committed_objects' selected label (current image) from the training data."""
        if "committed_objects" not in self.viewer.layers:
            show_error("There is no committed_objects layer: commit objects in the Segment widget first.")
            return
        layer = self.viewer.layers["committed_objects"]
        images = [
            name
            for (name, label) in self.recorded
            if label == layer.selected_label and name == self.session.current_image
        ]
        if not images:
            show_error(f"Label {layer.selected_label} is not a recorded object: pick one with the label picker.")
            return
        for name in images:
            self.store.remove_object(self.recorded.pop((name, layer.selected_label)))
        show_info(f"Removed object {layer.selected_label} from the training data.")
        self.refresh()

    def _import_layers(self) -> None:
        try:
            if self.import_image.value is None or self.import_labels.value is None:
                raise SamPeftError("Pick an image layer and a labels layer to import.")
            image = self.viewer.layers[self.import_image.value]
            labels = self.viewer.layers[self.import_labels.value]
            _, objects = self._require_store().add_labels(
                np.asarray(image.data), np.asarray(labels.data), name=image.name
            )
        except SamPeftError as err:
            show_error(str(err))
            return
        show_info(f"Added {image.name} with {len(objects)} objects to the store.")
        self.refresh()
