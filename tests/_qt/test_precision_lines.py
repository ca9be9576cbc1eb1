"""What the widgets say about precision: the probe's choice and figures, after a click on Load model."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.sam import precision_probe
from napari_sam_peft.core.sam.precision import PrecisionFigures, ProbeResult
from tests._qt.conftest import click, wait_for_worker

pytestmark = pytest.mark.gui


@pytest.fixture
def docks(make_napari_viewer):
    from napari_sam_peft._qt.finetune_widget import FinetuneWidget
    from napari_sam_peft._qt.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-peft", "cells")
    segment, finetune = SegmentWidget(viewer), FinetuneWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment")
    viewer.window.add_dock_widget(finetune, name="Finetune", tabify=True)
    return segment, finetune


def _cpu(monkeypatch, tmp_path, bf16: bool, figures: tuple[PrecisionFigures, ...] = ()) -> list:
    """This CPU with or without native bfloat16, and a probe that measures ``figures``."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setenv("NAPARI_SAM_PEFT_PROBE_CACHE", str(tmp_path / "probe.json"))
    calls: list = []

    def measure(sam, candidates):
        calls.append(candidates)
        return ProbeResult(precision_probe.probe_key(sam, torch.device("cpu")), figures)

    monkeypatch.setattr(precision_probe, "measure", measure)
    return calls


def _load_demo(qtbot, segment) -> None:
    segment.model_choice.value = "demo"
    click(segment.load_button)
    qtbot.waitUntil(lambda: segment.session.model.loaded is not None, timeout=60_000)
    wait_for_worker(qtbot, segment)


def test_a_fast_embedding_and_a_slow_training_precision_are_each_shown_with_the_figures(
    docks, qtbot, monkeypatch, tmp_path
):
    # bfloat16 embeds twice as fast here but trains twice as slow (issue 23's kind of CPU, for training)
    fp32, bf16 = PrecisionFigures("fp32", 0.2, 1.0), PrecisionFigures("bf16", 0.1, 2.0, 0.9999)
    calls = _cpu(monkeypatch, tmp_path, bf16=True, figures=(fp32, bf16))
    segment, finetune = docks
    _load_demo(qtbot, segment)
    assert calls == [["fp32", "bf16"]]  # measured once, when the model was loaded
    assert "embeds in bf16 (probe: fp32 200 ms, bf16 100 ms)" in segment.model_status.value
    assert "measured 2.0x faster than fp32" in segment.model_status.native.toolTip()
    expected = "Precision: fp32 (auto: no reduced precision is faster here (probe: fp32 1000 ms, bf16 2000 ms))"
    # the Finetune panel hears of the new model by an event after the Segment panel's status line
    qtbot.waitUntil(lambda: expected in finetune.recommendation.value, timeout=30_000)
    assert calls == [["fp32", "bf16"]]  # the Finetune widget read the figures, it did not probe again


def test_a_cpu_without_native_bfloat16_stays_in_float32_and_never_probes(docks, qtbot, monkeypatch, tmp_path):
    calls = _cpu(monkeypatch, tmp_path, bf16=False)
    segment, finetune = docks
    _load_demo(qtbot, segment)
    assert calls == []
    assert segment.model_status.value.endswith("embeds in fp32")
    assert "Precision: fp32 (auto: this CPU (no AVX512-BF16 or AMX) has no native bfloat16)" in (
        finetune.recommendation.value
    )
