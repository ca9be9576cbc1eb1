"""The "Dataset" dock widget: the annotation store behind the Segment widget.

Commits are recorded by the session (see :class:`~napari_sam_peft.session.AnnotatorSession`),
whether or not this dock is open. The widget is a thin container of three panels, one
module each: the store (:mod:`.dataset_store`: choose another store, see its images,
objects and split), the stored images (:mod:`.dataset_images`: move an image between
train and validation, remove an image or an object from the training data) and imports
(:mod:`.dataset_import`: existing annotations from an image + labels layer pair).
"""

from __future__ import annotations

from pathlib import Path

import napari
from magicgui.widgets import Container

from napari_sam_peft._qt.dataset_images import StoredImagesPanel
from napari_sam_peft._qt.dataset_import import ImportPanel
from napari_sam_peft._qt.dataset_store import StorePanel
from napari_sam_peft._qt.dock_layout import fit_to_dock, full_width
from napari_sam_peft._qt.viewer_session import SessionDock
from napari_sam_peft.core.data.store import AnnotationStore

#: the panels' widgets under the names scripts and tests have always used: name -> (panel, attribute)
WIDGET_NAMES = {
    **{name: ("store_panel", name) for name in ("store_path", "open_button", "summary", "table")},
    **{name: ("images_panel", name) for name in ("store_image", "split", "split_button")},
    **{name: ("images_panel", name) for name in ("remove_image_button", "remove_object_button")},
    **{name: ("import_panel", name) for name in ("import_image", "import_labels", "import_button")},
}


class DatasetWidget(SessionDock):
    """Dock widget: the session's annotation store, its split, and imports into it."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self.store_panel = StorePanel(napari_viewer, self.session)
        self.images_panel = StoredImagesPanel(napari_viewer, self.session, self.store_panel)
        self.import_panel = ImportPanel(napari_viewer, self.session, self.store_panel)
        panels = (self.store_panel, self.images_panel, self.import_panel)
        self.extend([widget for panel in panels for widget in panel.widgets])
        for name, (panel, attribute) in WIDGET_NAMES.items():
            setattr(self, name, getattr(getattr(self, panel), attribute))
        self.store_panel.store_changed(self.session.annotations.store)
        self.images_panel.refresh_choices()
        rows = [w for w in self if isinstance(w, Container)]
        full_width(self.store_panel.summary, self.store_panel.table, *rows)
        fit_to_dock(self, "Dataset")

    @property
    def store(self) -> AnnotationStore | None:
        """The session's store (None before one is opened)."""
        return self.session.annotations.store

    def open_store(self, path: str | Path) -> AnnotationStore | None:
        """Open or create the store at ``path``; from now on commits are recorded there."""
        return self.store_panel.open_store(path)

    def refresh(self) -> None:
        """Tell every widget the store changed (after writing to it directly, as scripts do)."""
        self.session.annotations.store_edited()
