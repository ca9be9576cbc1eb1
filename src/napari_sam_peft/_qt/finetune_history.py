"""The Finetune widget's history panel: the store's runs (with the chain of continued adapters), attaching the
adapter of any of them, and exporting one as a bioimage.io model package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from magicgui.widgets import Container, Label, PushButton, Table
from napari.utils.notifications import show_info

from napari_sam_peft._qt.background import BackgroundJobs
from napari_sam_peft._qt.dock_layout import full_width, on_click, show_text, wrapping
from napari_sam_peft._qt.run_tables import history_rows, set_rows, style_table
from napari_sam_peft._qt.user_errors import notify_worker_error, user_errors
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
        self.export_button = PushButton(
            text="Export to bioimage.io...",
            tooltip="Write the selected run's model (base + adapter, merged, with its instance decoder) as a "
            "bioimage.io model package, tested with bioimageio.core",
        )
        self.export_status = wrapping(Label(value=""))
        self.jobs = BackgroundJobs(lambda error: notify_worker_error(error, status=self.export_status))
        heading = Label(value="Runs")
        self.extend([heading, self.history, self.load_run_button, self.export_button, self.export_status])
        on_click(self.load_run_button, self.load_selected_run)
        on_click(self.export_button, self.export_selected_run)
        session.annotations.store_changed.connect(self.refresh)
        self.refresh()
        full_width(heading, self.history, self.export_status)

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

    def export_selected_run(self, path: Path | None = None) -> None:
        """Export the selected run's model as a bioimage.io package (the "Export to bioimage.io..." button):
        asks where (``path`` skips the dialog), then writes and tests it in a separate process."""
        with user_errors():
            run = self.selected_run()
            if not Path(run.adapter).exists():
                raise SamPeftError(f"This run wrote no adapter ({run.status}): there is nothing to export.")
            store = self.session.annotations.store
            if path is None:
                path = _ask_for_package_path(self.native, Path(run.adapter).parent.with_suffix(".bioimageio.zip"))
                if path is None:
                    return
            # the base model comes from the adapter itself (and the run.json beside it)
            command = [sys.executable, "-m", "napari_sam_peft.cli", "export", run.adapter,
                       "--bioimageio", str(path)]  # fmt: skip
            if store is not None:
                command += ["--store", str(store.path)]
            # the progress line is replaced by the result, or by the error, when the export ends
            show_text(
                self.export_status, f"Writing and testing the bioimage.io package {path} (a minute or more)..."
            )
            self.jobs.run("Exporting to bioimage.io", lambda report: _run_export(command), self._exported)

    def _exported(self, message: str) -> None:
        show_info(message)
        show_text(self.export_status, message)


def _ask_for_package_path(parent: Any, suggested: Path) -> Path | None:
    """Where to save the package: a save dialog (None: cancelled)."""
    from qtpy.QtWidgets import QFileDialog

    chosen, _ = QFileDialog.getSaveFileName(
        parent, "Save bioimage.io model package", str(suggested), "bioimage.io package (*.zip)"
    )
    if not chosen:
        return None
    return Path(chosen) if chosen.endswith(".zip") else Path(chosen + ".zip")


def _run_export(command: list[str]) -> str:
    """Run ``napari-sam-peft export`` in its own process (bioimage.io's test loads the model there, away
    from napari's); returns its last line, or raises its one-line error."""
    done = subprocess.run(command, capture_output=True, text=True)
    last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
    if done.returncode != 0:
        raise SamPeftError(f"Export to bioimage.io failed: {last.removeprefix('napari-sam-peft export: ')}")
    return "W" + last[1:] if last.startswith("wrote ") else last
