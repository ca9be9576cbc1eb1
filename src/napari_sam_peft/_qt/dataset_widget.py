"""The "Dataset" dock widget: the annotation store behind the Segment widget.

Commits are recorded by the session (see :class:`~napari_sam_peft.session.AnnotatorSession`),
whether or not this dock is open; this widget shows the store's images, objects and split,
lets the user choose another store, move an image between train and validation, remove an
object or an image from the training data, and import existing annotations from an image +
labels layer pair.
"""

from __future__ import annotations

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, Table
from napari.utils.notifications import show_error, show_info

from napari_sam_peft._qt.dock_layout import fit_to_dock, full_width, on_click, show_text, wrapping
from napari_sam_peft._qt.run_tables import style_table
from napari_sam_peft._qt.sessions import default_store_path, session_for
from napari_sam_peft.core.data.store import SPLITS, AnnotationStore
from napari_sam_peft.core.errors import SamPeftError


class DatasetWidget(Container):
    """Dock widget: the session's annotation store, its split, and imports into it."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)

        current = self.session.store.path if self.session.store is not None else None
        fallback = self.session.default_store_path or default_store_path(napari_viewer)
        self.store_path = FileEdit(label="store", mode="d", value=current or fallback)
        self.open_button = PushButton(text="Open / create store")
        self.summary = wrapping(Label(value=""))
        self.table = style_table(Table(value={"data": [], "index": [], "columns": ["image", "split", "objects"]}))
        self.store_image = ComboBox(label="stored image", choices=self._stored_image_choices)
        self.split = ComboBox(label="split", choices=list(SPLITS), value="train")
        self.split_button = PushButton(text="Set split")
        self.remove_image_button = PushButton(
            text="Remove image", tooltip="Remove the stored image and its objects from the training data"
        )
        self.remove_object_button = PushButton(
            text="Remove selected object", tooltip="Erase the label selected in committed_objects"
        )
        self.import_image = ComboBox(label="import image", choices=self._layers_of(napari.layers.Image))
        self.import_labels = ComboBox(label="with labels", choices=self._layers_of(napari.layers.Labels))
        self.import_button = PushButton(text="Import image + labels")
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
        on_click(self.open_button, lambda: self.open_store(self.store_path.value))
        on_click(self.split_button, self._set_split)
        on_click(self.remove_image_button, self._remove_image)
        on_click(self.remove_object_button, self.remove_selected_object)
        on_click(self.import_button, self._import_layers)
        self.viewer.layers.events.inserted.connect(self._refresh_layer_choices)
        self.viewer.layers.events.removed.connect(self._refresh_layer_choices)
        self.session.store_changed.connect(self._store_changed)
        self.session.store_updated.connect(self._show)
        self._store_changed(self.session.store)
        full_width(self.summary, self.table, *[w for w in self if isinstance(w, Container)])
        fit_to_dock(self, "Dataset")

    @property
    def store(self) -> AnnotationStore | None:
        return self.session.store

    # ------------------------------------------------------------------ store
    def open_store(self, path) -> AnnotationStore | None:
        """Open or create the store at ``path``; from now on commits are recorded there."""
        try:
            store = self.session.open_store(path)
        except (SamPeftError, OSError) as err:
            show_error(str(err))
            return None
        return store

    def _store_changed(self, store) -> None:
        if store is not None:
            self.store_path.value = store.path
        self._show()

    def _require_store(self) -> AnnotationStore:
        if self.store is None:
            self.open_store(self.store_path.value)
        if self.store is None:
            raise SamPeftError("No annotation store is open: choose a folder in the Dataset widget.")
        return self.store

    def refresh(self) -> None:
        """Tell every widget the store changed (after an import, a split or a removal here)."""
        if self.store is not None:
            self.session.store_updated.emit(self.store)

    def _show(self, *_) -> None:
        if self.store is None:
            where = self.session.default_store_path or self.store_path.value
            show_text(self.summary, f"No store open yet: the first commit creates {where}.")
            return
        snapshot = self.store.snapshot()
        info = snapshot.info()
        show_text(
            self.summary,
            f"{info['images']} images, {info['objects']} objects "
            f"(train {info['train_objects']}, val {info['val_objects']}) in {self.store.path}",
            str(self.store.path),
        )
        self.table.value = {
            "data": [[i.name or i.image_id[:8], i.split, len(i.objects)] for i in snapshot.images],
            "index": [str(n) for n in range(1, len(snapshot.images) + 1)],
            "columns": ["image", "split", "objects"],
        }
        try:
            self.store_image.reset_choices()
        except RuntimeError:  # the viewer is closing
            pass

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
        """Erase committed_objects' selected label on the current image; the store then drops it too."""
        if "committed_objects" not in self.viewer.layers:
            show_error("There is no committed_objects layer: commit objects in the Segment widget first.")
            return
        layer = self.viewer.layers["committed_objects"]
        label = int(layer.selected_label)
        if not np.any(layer.data == label):
            show_error(f"Label {label} is not a committed object here: pick one with the label picker.")
            return
        layer.data[layer.data == label] = 0
        layer.refresh()
        self.session.flush_requested.emit()
        show_info(f"Removed object {label} from committed_objects and the training data.")

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
