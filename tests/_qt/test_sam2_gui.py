"""A SAM 2.1 model in napari by clicks and keys: its file typed into the Segment dock, a box drawn and
segmented, committed, Start training, a hot reload; then a volume, where Shift+S propagates with SAM 2's
video predictor. The model is a tiny random SAM 2.1 (it does not segment well: the point is the path)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam_peft.core.sam.architecture import build_sam
from napari_sam_peft.core.sam.hiera_architecture import TINY_HIERA
from napari_sam_peft.core.volume import memory_propagation
from napari_sam_peft.core.volume.propagation import MEMORY_PROPAGATION
from tests._qt.conftest import (
    click,
    dock_from_menu,
    drag_on_canvas,
    error_messages,
    press,
    start_short_run,
    trigger_menu,
)

pytestmark = [pytest.mark.gui, pytest.mark.slow]  # it trains

CELLS = "cells (domain B)"
VOLUME = "nuclei volume (3D)"


def _tiny_sam2_file(tmp_path) -> str:
    torch.manual_seed(0)
    path = tmp_path / "tiny_sam2.1.pt"
    torch.save({"model": build_sam(TINY_HIERA).state_dict()}, path)  # Meta's checkpoint layout
    return str(path)


def _box(truth: np.ndarray, obj: int) -> tuple[tuple[float, float], tuple[float, float]]:
    rows, cols = np.nonzero(truth == obj)
    return (rows.min() - 2.0, cols.min() - 2.0), (rows.max() + 2.0, cols.max() + 2.0)


def _segment_and_commit(viewer, segment, truth, obj) -> None:
    viewer.layers.selection.active = segment.box_layer
    segment.box_layer.mode = "add_rectangle"
    drag_on_canvas(viewer, *_box(truth, obj))
    press(viewer, "s")
    assert viewer.layers["current_object"].data.any(), "S gave no mask"
    press(viewer, "c")


def test_a_tiny_sam2_model_segments_trains_reloads_and_propagates_by_clicks_and_keys(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    viewer = make_napari_viewer(show=True)
    trigger_menu(viewer, "File", "Open Sample", "SAM PEFT", "Cells, dim and elongated")
    qtbot.waitUntil(lambda: CELLS in viewer.layers, timeout=10_000)
    segment = dock_from_menu(viewer, "Segment")
    finetune = dock_from_menu(viewer, "Finetune")

    segment.model_panel.model_choice.value = "hvit_t"  # the list says what a SAM 2.1 model needs
    assert "SAM 2.1, Hiera tiny, 1024 px input" in segment.model_panel.needs.value
    line_edit = segment.model_panel.model_file.line_edit.native
    line_edit.setFocus()
    qtbot.keyClicks(line_edit, _tiny_sam2_file(tmp_path))
    click(segment.load_button)
    qtbot.waitUntil(lambda: segment.embeddings is not None, timeout=120_000)
    assert segment.session.model.loaded.architecture.name == "tiny_hiera"
    assert segment.embeddings["features"].shape[1] == 4 * 32  # SAM 2's embedding and high-res maps, packed

    click(segment.auto_button)  # automatic segmentation: the mask generator on SAM 2.1's decoder
    qtbot.waitUntil(lambda: segment.automatic_panel.last_run is not None, timeout=120_000)
    assert "auto_segmentation" in viewer.layers
    qtbot.waitUntil(lambda: not segment.active_workers, timeout=60_000)

    truth = viewer.layers[f"{CELLS} ground truth"].data
    for obj in (1, 2, 3, 4):
        _segment_and_commit(viewer, segment, truth, obj)
    assert segment.session.annotations.store.info()["objects"] == 4

    assert not finetune.with_decoder.value and not finetune.with_decoder.enabled  # no AIS for SAM 2.1 yet
    start_short_run(finetune)
    assert finetune.process is not None, "Start training did not start a run"
    qtbot.waitUntil(lambda: finetune.reloads >= 1, timeout=240_000)
    qtbot.waitUntil(lambda: not segment.active_workers and segment.embeddings is not None, timeout=60_000)
    adapter = segment.session.model.adapter
    assert adapter is not None and adapter.spec.describe()
    assert segment.session.embeddings.reembedded_from_stage >= 1  # from the kept carry: blocks before late once
    click(finetune.stop_button)
    qtbot.waitUntil(lambda: finetune.process.terminal_event is not None, timeout=120_000)
    qtbot.waitUntil(lambda: finetune.start_button.enabled, timeout=10_000)
    finetune.process.close()

    # A volume: Shift+S runs SAM 2's video predictor over the slices, with the hot-reloaded adapter.
    frames = []
    original = memory_propagation.StoredFeatureVideoPredictor.propagate_in_video

    def counted(self, *args, **kwargs):
        for out in original(self, *args, **kwargs):
            frames.append(out[0])
            yield out

    monkeypatch.setattr(memory_propagation.StoredFeatureVideoPredictor, "propagate_in_video", counted)
    trigger_menu(viewer, "File", "Open Sample", "SAM PEFT", "Nuclei volume, 3D")
    qtbot.waitUntil(lambda: VOLUME in viewer.layers, timeout=10_000)
    segment.image_choice.value = VOLUME
    qtbot.waitUntil(lambda: segment.volume_panel.status.value == MEMORY_PROPAGATION, timeout=30_000)
    assert not segment.volume_panel.projection.visible  # SAM 1's projection does not apply
    volume_truth = viewer.layers[f"{VOLUME} ground truth"].data
    z = volume_truth.shape[0] // 2
    viewer.dims.set_current_step(0, z)
    label = int(np.bincount(volume_truth[z].ravel())[1:].argmax()) + 1
    viewer.layers.selection.active = segment.box_layer
    segment.box_layer.mode = "add_rectangle"
    drag_on_canvas(viewer, *_box(volume_truth[z], label))
    segment.volume_panel.status.value = ""
    press(viewer, "s", shift=True)
    qtbot.waitUntil(lambda: "Propagated through slices" in segment.volume_panel.status.value, timeout=240_000)
    assert z in frames and len(frames) >= 2, frames  # the video predictor ran from the prompted slice
    assert viewer.layers["current_object"].data[z].any()
    assert not [m for m in error_messages() if "Traceback" in m]
