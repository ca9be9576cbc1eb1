"""Fixtures for GUI tests: a real napari viewer with the Segment widget docked."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.embeddings import EmbeddingCache
from napari_sam_peft.core.models import load_model


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own embedding cache folder."""
    monkeypatch.setenv("NAPARI_SAM_PEFT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def demo_model():
    return load_model("demo", device="cpu")


def wait_for_worker(qtbot, widget, timeout=60_000):
    """Wait until every background job the widget started has finished."""
    qtbot.waitUntil(lambda: not widget.active_workers, timeout=timeout)
    qtbot.wait(20)


def error_messages():
    from napari.utils.notifications import notification_manager

    return [str(record.message) for record in notification_manager.records]


@pytest.fixture
def segment_widget(make_napari_viewer, qtbot, demo_model):
    """A viewer with the nuclei sample, the Segment widget docked and the demo model loaded."""
    from napari_sam_peft._qt.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-peft", "nuclei")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment")
    widget.session._cache = EmbeddingCache()
    widget.session.set_model(demo_model)
    wait_for_worker(qtbot, widget)
    assert widget.embeddings is not None
    return viewer, widget


def place_points(widget, points, labels):
    layer = widget.point_layer
    layer.data = np.asarray(points, dtype=float)
    layer.properties = {"label": np.asarray(labels)}
