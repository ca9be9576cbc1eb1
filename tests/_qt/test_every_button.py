"""Every button of the three docks, clicked before anything is set up, answers with a message.

The class of bug this guards against: a button's signal passes its checked state into a
slot with optional arguments (``start(env=False)`` raised "'bool' object is not iterable"
and showed a blank red notification).
"""

from __future__ import annotations

import pytest
from magicgui.widgets import Container, FileEdit, PushButton

from tests._qt.conftest import click, place_points


def _buttons(widget) -> list[PushButton]:
    found = []

    def walk(container):
        for child in container:
            if isinstance(child, PushButton):
                found.append(child)
            elif isinstance(child, Container) and not isinstance(child, FileEdit):  # its button opens a dialog
                walk(child)

    walk(widget)
    return found


@pytest.mark.gui
def test_every_button_answers_with_a_message_not_an_exception(make_napari_viewer, qtbot):
    from napari.utils.notifications import notification_manager

    from napari_sam_peft._qt.dataset_widget import DatasetWidget
    from napari_sam_peft._qt.finetune_widget import FinetuneWidget
    from napari_sam_peft._qt.segment_widget import SegmentWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-peft", "cells")
    widgets = [cls(viewer) for cls in (SegmentWidget, DatasetWidget, FinetuneWidget)]
    for widget in widgets:
        viewer.window.add_dock_widget(widget, name=type(widget).__name__)
    segment = widgets[0]
    clicked = []
    for widget in widgets:
        for button in _buttons(widget):
            if button is segment.load_button or not button.enabled:
                continue
            before = len(notification_manager.records)
            click(button)
            qtbot.wait(20)
            new = [str(r.message) for r in notification_manager.records[before:]]
            clicked.append(button.text)
            assert all(m.strip() for m in new), f"{button.text!r} showed an empty notification"
            assert not any("object is not iterable" in m or "Traceback" in m for m in new), (button.text, new)
    qtbot.waitUntil(lambda: not segment.active_workers, timeout=60_000)
    assert {"Start training", "Commit [C]", "Attach adapter", "Set split"} <= set(clicked)
    finetune = widgets[2]
    assert finetune.process is None  # nothing to train on: no run was started

    # Now with a model and a committed object, "Start training" starts a run.
    segment.model_choice.value = "demo"  # the small model (the default is LiteMedSAM)
    click(segment.load_button)
    qtbot.waitUntil(lambda: segment.embeddings is not None, timeout=60_000)
    place_points(segment, [[128.0, 128.0]], ["positive"])
    click(segment.segment_button)
    click(segment.commit_button)
    finetune.steps.value = "2"
    before = len(notification_manager.records)
    click(finetune.start_button)
    messages = [str(r.message) for r in notification_manager.records[before:]]
    assert finetune.process is not None, messages
    finetune.process.close()
