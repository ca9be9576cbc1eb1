"""The Dataset widget's import panel: existing annotations (an image + labels layer pair) into the store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, PushButton
from napari.utils.notifications import show_info

from napari_sam_peft._qt.dataset_store import StorePanel
from napari_sam_peft._qt.dock_layout import on_click
from napari_sam_peft._qt.user_errors import user_errors
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.session import AnnotatorSession


class ImportPanel:
    """Pick an image layer and a labels layer; import them as one stored image with its objects."""

    def __init__(self, viewer: napari.Viewer, session: AnnotatorSession, store_panel: StorePanel) -> None:
        self.viewer = viewer
        self.session = session
        self.store_panel = store_panel
        self.import_image = ComboBox(label="import image", choices=self._layers_of(napari.layers.Image))
        self.import_labels = ComboBox(label="with labels", choices=self._layers_of(napari.layers.Labels))
        self.import_button = PushButton(text="Import image + labels")
        on_click(self.import_button, self.import_layers)
        viewer.layers.events.inserted.connect(self.refresh_choices)
        viewer.layers.events.removed.connect(self.refresh_choices)

    @property
    def widgets(self) -> list[Any]:
        """The panel's widgets, top to bottom."""
        return [self.import_image, self.import_labels, self.import_button]

    def refresh_choices(self, *_: object) -> None:
        """List the viewer's image and labels layers again."""
        try:
            self.import_image.reset_choices()
            self.import_labels.reset_choices()
        except RuntimeError:  # the viewer is closing
            pass

    def import_layers(self) -> None:
        """Add the picked image with one object per id of the picked labels to the store."""
        with user_errors() as outcome:
            if self.import_image.value is None or self.import_labels.value is None:
                raise SamPeftError("Pick an image layer and a labels layer to import.")
            image = self.viewer.layers[self.import_image.value]
            labels = self.viewer.layers[self.import_labels.value]
            self.store_panel.require_store()
            objects = self.session.annotations.import_labels(
                np.asarray(image.data), np.asarray(labels.data), name=image.name
            )
        if outcome.failed:
            return
        show_info(f"Added {image.name} with {len(objects)} objects to the store.")

    def _layers_of(self, kind: type) -> Callable[..., list[str]]:
        def choices(*_: object) -> list[str]:
            return [layer.name for layer in self.viewer.layers if isinstance(layer, kind)]

        return choices
