"""The Dataset widget's stored-images panel: set an image's split, remove an image or an object."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton
from napari.utils.notifications import show_info

from napari_sam_peft._qt.dataset_store import StorePanel
from napari_sam_peft._qt.dock_layout import on_click
from napari_sam_peft._qt.user_errors import user_errors
from napari_sam_peft.core.data.store import SPLITS
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.session import AnnotatorSession

COMMITTED = "committed_objects"


class StoredImagesPanel:
    """Edits of the store's images, and removal of the committed object the user selected."""

    def __init__(self, viewer: napari.Viewer, session: AnnotatorSession, store_panel: StorePanel) -> None:
        self.viewer = viewer
        self.session = session
        self.store_panel = store_panel
        self.store_image = ComboBox(label="stored image", choices=self._stored_images)
        self.split = ComboBox(label="split", choices=list(SPLITS), value="train")
        self.split_button = PushButton(text="Set split")
        self.remove_image_button = PushButton(
            text="Remove image", tooltip="Remove the stored image and its objects from the training data"
        )
        self.remove_object_button = PushButton(
            text="Remove selected object", tooltip="Erase the label selected in committed_objects"
        )
        self.split_row = Container(widgets=[self.split, self.split_button], layout="horizontal", labels=False)
        on_click(self.split_button, self.set_split)
        on_click(self.remove_image_button, self.remove_image)
        on_click(self.remove_object_button, self.remove_selected_object)
        session.annotations.store_changed.connect(self.refresh_choices)
        session.annotations.store_updated.connect(self.refresh_choices)

    @property
    def widgets(self) -> list[Any]:
        """The panel's widgets, top to bottom."""
        return [self.store_image, self.split_row, self.remove_image_button, self.remove_object_button]

    def refresh_choices(self, *_: object) -> None:
        """List the store's images again."""
        if self.session.annotations.store is None:
            return
        try:
            self.store_image.reset_choices()
        except RuntimeError:  # the viewer is closing
            pass

    def set_split(self) -> None:
        """Move the picked stored image to the chosen split."""
        self._edit_picked(lambda image_id: self.session.annotations.set_split(image_id, self.split.value))

    def remove_image(self) -> None:
        """Remove the picked stored image and its objects from the training data."""
        self._edit_picked(self.session.annotations.remove_image)

    def remove_selected_object(self) -> None:
        """Erase committed_objects' selected label on the current image; the store then drops it too."""
        with user_errors() as outcome:
            if COMMITTED not in self.viewer.layers:
                raise SamPeftError(
                    "There is no committed_objects layer: commit objects in the Segment widget first."
                )
            layer = self.viewer.layers[COMMITTED]
            label = int(layer.selected_label)
            shown = self.session.shown
            if shown is None or not np.any(layer.data == label):
                raise SamPeftError(
                    f"Label {label} is not a committed object here: pick one with the label picker."
                )
            self.session.annotations.remove_object(shown.name, label)
        if outcome.failed:
            return
        show_info(f"Removed object {label} from committed_objects and the training data.")

    def _edit_picked(self, edit: Callable[[str], None]) -> None:
        with user_errors():
            if self.store_image.value is None:
                raise SamPeftError("Pick a stored image first.")
            self.store_panel.require_store()
            edit(self.store_image.value)

    def _stored_images(self, *_: object) -> list[tuple[str, str]]:
        store = self.session.annotations.store
        if store is None:
            return []
        return [(i.name or i.image_id[:8], i.image_id) for i in store.snapshot().images]
