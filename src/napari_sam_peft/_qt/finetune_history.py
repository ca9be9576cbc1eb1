"""The Finetune widget's history panel: the store's runs, and attaching the adapter of any of them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from magicgui.widgets import Container, Label, PushButton, Table

from napari_sam_peft._qt.dock_layout import full_width, on_click
from napari_sam_peft._qt.run_tables import history_rows, set_rows, style_table
from napari_sam_peft._qt.user_errors import user_errors
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.training.runs import RunRecord, list_runs
from napari_sam_peft.session import AnnotatorSession


class HistoryPanel(Container):
    """The runs of the session's store, newest first, and "Load selected run" (which attaches a run's
    adapter to the session's model; the other panels hear of it from the model)."""

    def __init__(self, session: AnnotatorSession) -> None:
        super().__init__(labels=True)
        self.session = session
        self.runs: list[RunRecord] = []
        self.history = style_table(Table(value=history_rows([])))
        self.load_run_button = PushButton(
            text="Load selected run", tooltip="Attach the adapter of the run selected in the table"
        )
        heading = Label(value="Runs")
        self.extend([heading, self.history, self.load_run_button])
        on_click(self.load_run_button, self.load_selected_run)
        session.annotations.store_changed.connect(self.refresh)
        self.refresh()
        full_width(heading, self.history)

    def refresh(self, *_: Any) -> None:
        """List the runs of the session's store again."""
        store = self.session.annotations.store
        self.runs = list_runs(store.path) if store is not None else []
        try:
            set_rows(self.history, history_rows(self.runs))
        except RuntimeError:  # the viewer is closing
            pass

    def selected_run(self) -> RunRecord:
        """The run selected in the table.

        Raises
        ------
        SamPeftError
            If none is selected.
        """
        rows = sorted({index.row() for index in self.history.native.selectedIndexes()})
        if not rows:
            raise SamPeftError("Select a run in the table first.")
        return self.runs[rows[0]]

    def load_selected_run(self) -> None:
        """Attach the selected run's adapter (the "Load selected run" button)."""
        with user_errors():
            run = self.selected_run()
            if not Path(run.adapter).exists():
                raise SamPeftError(f"This run wrote no adapter ({run.status}).")
            self.session.model.set_adapter(Path(run.adapter))
