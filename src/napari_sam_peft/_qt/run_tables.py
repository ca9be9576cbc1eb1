"""The Finetune widget's two tables: base vs adapter evaluation, and the store's runs.

Numbers are shown as fixed-point text with an explicit sign for changes (``+0.165``,
``-0.035``), right-aligned, and the columns size to their headers, so nothing is clipped.
"""

from __future__ import annotations

import re
from typing import Any

from magicgui.widgets import Table
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QStyledItemDelegate, QTableWidget, QTableWidgetItem

from napari_sam_peft.core.evaluation.report import EvaluationReport
from napari_sam_peft.core.training.runs import RunRecord

#: the method comes last: it is the widest, and "from" and "status" must fit the dock at 1280 x 800
HISTORY_COLUMNS = ["run", "from", "status", "best val", "Box change", "method"]


def evaluation_rows(report: EvaluationReport | None) -> dict[str, Any]:
    """Table value for an evaluation: a row per metric with base, adapter and signed change.

    Metrics are rows, not columns, so three number columns fit a narrow dock.
    """
    rows = report.rows() if report is not None else []
    return {
        "data": [[f"{row.base:.3f}", f"{row.adapter:.3f}", f"{row.change:+.3f}"] for row in rows],
        "index": [row.metric for row in rows],
        "columns": ["base", "adapter", "change"],
    }


def _short_name(folder: str) -> str:
    """A run folder's name as the table shows it: ``20261203-220113-late_lora`` -> ``12-03 22:01:13`` (the
    method has its own column; other names are shown whole)."""
    match = re.fullmatch(r"\d{4}(\d\d)(\d\d)-(\d\d)(\d\d)(\d\d)-.*", folder)
    if match is None:
        return folder
    month, day, hour, minute, second = match.groups()
    return f"{month}-{day} {hour}:{minute}:{second}"


def _started_from(run: RunRecord, runs: list[RunRecord]) -> str:
    """What a run started from: "base", or the row of the run whose adapter it continued ("run 2")."""
    if not run.parent:
        return "base"
    for row, other in enumerate(runs, start=1):
        if other.adapter == run.parent.get("adapter"):
            return f"run {row}"
    return f"adapter {str(run.parent.get('hash', ''))[:8]}"


def history_rows(runs: list[RunRecord]) -> dict[str, Any]:
    """Table value for the runs of a store (newest first); "from" shows the chain of continued adapters."""
    data = []
    for run in runs:
        score = f"{run.best_score:.3f}" if run.best_score is not None else ""
        change = f"{run.evaluation.change('box'):+.3f}" if run.evaluation is not None else ""
        name = _short_name(run.run_dir.name) if run.run_dir is not None else ""
        status = f"{run.status} on {run.remote.get('host') or 'cluster'}" if run.remote else run.status
        data.append([name, _started_from(run, runs), status, score, change, run.method])
    return {"data": data, "index": [str(i + 1) for i in range(len(data))], "columns": HISTORY_COLUMNS}


def set_rows(table: Table, value: dict[str, Any]) -> None:
    """Show ``value`` in ``table`` as text (magicgui would turn "+0.165" back into 0.165)."""
    native: QTableWidget = table.native
    table.value = {"data": [], "index": [], "columns": value["columns"]}
    native.setRowCount(len(value["data"]))
    native.setVerticalHeaderLabels(value["index"])
    for r, row in enumerate(value["data"]):
        for c, text in enumerate(row):
            item = native.item(r, c)
            if item is None:
                item = QTableWidgetItem()
                native.setItem(r, c, item)
            item.setText(str(text))
            if _is_number(str(text)):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    native.resizeColumnsToContents()


def style_table(table: Table, min_height: int = 110, stretch: bool = False) -> Table:
    """Read-only rows shown as their text, headers never clipped; ``stretch`` shares the width evenly.

    magicgui's item delegate re-formats anything that parses as a number ("+0.165" became
    "0.165", 0.003 became "3.000e-03"): a plain delegate shows the cell's text as it is.
    """
    native: QTableWidget = table.native
    native.setItemDelegate(QStyledItemDelegate(native))
    native.setMinimumHeight(min_height)
    native.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    native.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    header = native.horizontalHeader()
    if stretch:  # a few short columns that should all fit the dock's width
        header.setMinimumSectionSize(20)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    else:
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
    return table


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
