"""One evaluation report: the rows every table (terminal, widget, demo) is drawn from."""

from __future__ import annotations

import pytest

from napari_sam_peft.core.evaluation.report import METRIC_NAMES, METRICS, EvaluationReport, scores_line

BASE = {"point": 0.5, "box": 0.6, "i_p": 0.7, "i_b": 0.8, "n_objects": 4}
ADAPTER = {"point": 0.665, "box": 0.565, "i_p": 0.7, "i_b": 0.81, "n_objects": 4}
REPORT = EvaluationReport(
    "validation split", "the store's validation split: 1 image, 4 objects", 1, 4, BASE, ADAPTER
)


def test_rows_are_the_metrics_in_order_with_the_change():
    rows = REPORT.rows()
    assert [row.metric for row in rows] == list(METRIC_NAMES) == ["Point", "Box", "I_P", "I_B"]
    assert [row.base for row in rows] == [BASE[m] for m in METRICS]
    assert [round(row.change, 3) for row in rows] == [0.165, -0.035, 0.0, 0.01]
    assert REPORT.change("box") == pytest.approx(-0.035)


def test_the_terminal_table_says_what_it_measured_and_signs_changes():
    first, header, base, adapter, change = REPORT.text().splitlines()
    assert first == "mSA on the store's validation split: 1 image, 4 objects"
    assert header.split() == ["Point", "Box", "I_P", "I_B"]
    assert base.split() == ["base", "0.500", "0.600", "0.700", "0.800"]
    assert adapter.split()[0] == "adapter"
    assert change.split() == ["change", "+0.165", "-0.035", "+0.000", "+0.010"]


def test_the_markdown_table_has_a_column_per_metric():
    lines = REPORT.markdown("held-out mSA", "demo model", "+ lora adapter").splitlines()
    assert lines[0] == "| held-out mSA | Point | Box | I_P | I_B |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| demo model | 0.500 | 0.600 | 0.700 | 0.800 |"
    assert lines[4] == "| change | +0.165 | -0.035 | +0.000 | +0.010 |"


def test_a_report_round_trips_through_its_json_form():
    assert EvaluationReport.from_dict(REPORT.to_dict()) == REPORT
    assert EvaluationReport.from_dict({"base": BASE, "adapter": ADAPTER}).images == 0  # older run records


def test_one_models_scores_on_one_line():
    assert scores_line(BASE) == "Point 0.500  Box 0.600  I_P 0.700  I_B 0.800"


def test_volume_scores_are_rows_after_the_2d_ones_only_where_both_sides_have_them():
    base = {**BASE, "ais": 0.3, "volume": 0.4, "volume_ais": 0.2}
    adapter = {**ADAPTER, "ais": 0.5, "volume": 0.6, "volume_ais": 0.45}
    report = EvaluationReport("validation split", "a volume", 1, 4, base, adapter)
    assert [row.metric for row in report.rows()] == ["Point", "Box", "I_P", "I_B", "AIS", "3D", "3D AIS"]
    assert [round(row.change, 3) for row in report.rows()[-2:]] == [0.2, 0.25]
    assert scores_line(base).endswith("AIS 0.300  3D 0.400  3D AIS 0.200")
    # a run without a decoder scores propagation in 3D, not the automatic 3D result
    base, adapter = {**BASE, "volume": 0.4}, {**ADAPTER, "volume": 0.5}
    report = EvaluationReport("validation split", "a volume", 1, 4, base, adapter)
    assert [row.metric for row in report.rows()][-1] == "3D"
