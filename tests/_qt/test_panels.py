"""The docks are thin containers of panels: the user sees the same widgets, in the same order."""

from __future__ import annotations

import pytest
from magicgui.widgets import CheckBox, Container, FileEdit, Label, PushButton, Table


def _shown(container) -> list:
    """What a user reads in a dock, top to bottom: button texts, field labels, rows as lists."""
    seen = []
    for widget in container:
        if isinstance(widget, PushButton | CheckBox):
            seen.append(widget.text)
        elif isinstance(widget, Label):
            seen.append("<text>")
        elif isinstance(widget, Table):
            seen.append("<table>")
        elif isinstance(widget, Container) and not isinstance(widget, FileEdit):
            seen.append(_shown(widget))
        else:
            seen.append(widget.label)
    return seen


SEGMENT = [
    "model",
    "or file",
    "device",
    "Load model",
    "adapter",
    ["Attach adapter", "Base model"],
    "<text>",
    "image",
    ["< Previous", "Next >", "Suggest"],
    "folder",
    "<text>",
    ["batch mode", "pre-segment"],
    ["Segment [S]", "Commit [C]"],
    ["Clear [Shift+C]", "Undo [U]"],
    ["Automatic", "Commit automatic"],
    "<text>",
    "<text>",
]
DATASET = [
    "store",
    "Open / create store",
    "<text>",
    "<table>",
    "stored image",
    ["split", "Set split"],
    "Remove image",
    "Remove selected object",
    "import image",
    "with labels",
    "Import image + labels",
]


@pytest.mark.parametrize(
    ("module", "name", "expected"), [("segment", "SegmentWidget", SEGMENT), ("dataset", "DatasetWidget", DATASET)]
)
def test_a_dock_shows_its_panels_widgets_in_order(make_napari_viewer, module, name, expected):
    import importlib

    widget_class = getattr(importlib.import_module(f"napari_sam_peft._qt.{module}_widget"), name)
    viewer = make_napari_viewer()
    widget = widget_class(viewer)
    viewer.window.add_dock_widget(widget, name=name)
    assert _shown(widget) == expected


def test_the_segment_panels_share_the_viewers_session_and_its_store(make_napari_viewer, tmp_path):
    from napari_sam_peft._qt.dataset_widget import DatasetWidget
    from napari_sam_peft._qt.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    segment, dataset = SegmentWidget(viewer), DatasetWidget(viewer)
    panels = [segment.model_panel, segment.image_panel, segment.prompt_panel, segment.automatic_panel]
    panels += [segment.suggest_panel]
    panels += [segment.commits_panel, dataset.store_panel, dataset.images_panel, dataset.import_panel]
    assert all(panel.session is segment.session for panel in panels)
    store = dataset.open_store(tmp_path / "shared.sampeft.zarr")
    assert str(store.path) in segment.store_status.native.toolTip()  # the store panel's store, said by Segment
