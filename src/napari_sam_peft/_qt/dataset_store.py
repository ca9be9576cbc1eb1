"""The Dataset widget's store panel: which store commits go to, and what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import FileEdit, Label, PushButton, Table

from napari_sam_peft._qt.dock_layout import on_click, show_text, wrapping
from napari_sam_peft._qt.run_tables import style_table
from napari_sam_peft._qt.user_errors import user_errors
from napari_sam_peft._qt.viewer_session import default_store_path
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.session import AnnotatorSession

COLUMNS = ["image", "split", "objects"]


class StorePanel:
    """Open or create a store, and show its images, objects and split."""

    def __init__(self, viewer: napari.Viewer, session: AnnotatorSession) -> None:
        self.session = session
        current = session.annotations.store.path if session.annotations.store is not None else None
        fallback = session.annotations.default_store_path or default_store_path(viewer)
        self.store_path = FileEdit(label="store", mode="d", value=current or fallback)
        self.open_button = PushButton(text="Open / create store")
        self.summary = wrapping(Label(value=""))
        self.table = style_table(Table(value={"data": [], "index": [], "columns": COLUMNS}))
        on_click(self.open_button, lambda: self.open_store(self.store_path.value))
        session.annotations.store_changed.connect(self.store_changed)
        session.annotations.store_updated.connect(self.show)

    @property
    def widgets(self) -> list[Any]:
        """The panel's widgets, top to bottom."""
        return [self.store_path, self.open_button, self.summary, self.table]

    def open_store(self, path: str | Path) -> AnnotationStore | None:
        """Open or create the store at ``path``; from now on commits are recorded there (None: it failed)."""
        with user_errors():
            return self.session.annotations.open_store(path)
        return None

    def require_store(self) -> AnnotationStore:
        """The open store, or the one at the chosen path (opened or created).

        Raises
        ------
        SamPeftError
            No store could be opened.
        """
        if self.session.annotations.store is None:
            self.open_store(self.store_path.value)
        if self.session.annotations.store is None:
            raise SamPeftError("No annotation store is open: choose a folder in the Dataset widget.")
        return self.session.annotations.store

    def store_changed(self, store: AnnotationStore | None) -> None:
        """Show another store's path and content."""
        if store is not None:
            self.store_path.value = store.path
        self.show()

    def show(self, *_: object) -> None:
        """Show the store's summary and one table row per image."""
        store = self.session.annotations.store
        if store is None:
            where = self.session.annotations.default_store_path or self.store_path.value
            show_text(self.summary, f"No store open yet: the first commit creates {where}.")
            return
        snapshot = store.snapshot()
        info = snapshot.info()
        show_text(
            self.summary,
            f"{info['images']} images, {info['objects']} objects "
            f"(train {info['train_objects']}, val {info['val_objects']}) in {store.path}",
            str(store.path),
        )
        self.table.value = {
            "data": [[i.name or i.image_id[:8], i.split, len(i.objects)] for i in snapshot.images],
            "index": [str(n) for n in range(1, len(snapshot.images) + 1)],
            "columns": COLUMNS,
        }
