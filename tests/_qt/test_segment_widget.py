"""The Segment widget in a real napari viewer: prompts, segment, commit, undo, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.data.sample_data import make_sample
from tests._qt.conftest import click, error_messages, place_points, press, wait_for_worker

NUCLEI = make_sample("nuclei", seed=0)


def _centre_of(obj_id):
    rows, cols = np.nonzero(NUCLEI.labels == obj_id)
    return [rows.mean(), cols.mean()]


def test_widget_creates_the_micro_sam_layers(segment_widget):
    viewer, widget = segment_widget
    for name in ("point_prompts", "prompts", "current_object", "committed_objects"):
        assert name in viewer.layers
    assert widget.image_choice.value == "nuclei (domain A)"
    assert "demo on cpu, base model, embeds in" in widget.model_status.value


def test_point_segment_commit_and_undo(segment_widget, qtbot):
    viewer, widget = segment_widget
    place_points(widget, [_centre_of(1)], ["positive"])
    click(widget.segment_button)
    current = viewer.layers["current_object"].data
    assert current.shape == NUCLEI.image.shape and current.any()

    click(widget.commit_button)
    committed = viewer.layers["committed_objects"].data
    assert set(np.unique(committed)) == {0, 1}
    np.testing.assert_array_equal(committed == 1, current > 0)
    assert len(widget.point_layer.data) == 0  # prompts cleared after a commit
    assert not viewer.layers["current_object"].data.any()

    place_points(widget, [_centre_of(2)], ["positive"])
    click(widget.segment_button)
    click(widget.commit_button)
    assert set(np.unique(viewer.layers["committed_objects"].data)) >= {0, 2}

    click(widget.undo_button)
    labels = viewer.layers["committed_objects"].data
    assert 2 not in np.unique(labels) and 1 in np.unique(labels)
    click(widget.undo_button)
    assert not viewer.layers["committed_objects"].data.any()


@pytest.mark.parametrize("selected", ["point_prompts", "nuclei (domain A)", "committed_objects"])
def test_keyboard_shortcuts_drive_segment_commit_clear(segment_widget, qtbot, selected):
    """S, C, Shift+C and U work whichever layer is selected (an image layer's own C must not win)."""
    viewer, widget = segment_widget
    viewer.layers.selection.active = viewer.layers[selected]
    place_points(widget, [_centre_of(3)], ["positive"])
    press(viewer, "s")
    assert viewer.layers["current_object"].data.any()
    press(viewer, "c")
    assert viewer.layers["committed_objects"].data.max() == 1
    place_points(widget, [_centre_of(4)], ["positive"])
    press(viewer, "c", shift=True)
    assert len(widget.point_layer.data) == 0
    press(viewer, "u")
    assert not viewer.layers["committed_objects"].data.any()


def test_box_prompt_segments_one_object(segment_widget):
    viewer, widget = segment_widget
    rows, cols = np.nonzero(NUCLEI.labels == 5)
    r0, c0, r1, c1 = rows.min(), cols.min(), rows.max(), cols.max()
    widget.box_layer.add_rectangles(np.array([[r0, c0], [r1, c1]], dtype=float))
    click(widget.segment_button)
    assert set(np.unique(viewer.layers["current_object"].data)) == {0, 1}


def test_batch_mode_gives_one_object_per_positive_point(segment_widget):
    viewer, widget = segment_widget
    widget.batch_mode.value = True
    place_points(widget, [_centre_of(1), _centre_of(2), _centre_of(3)], ["positive"] * 3)
    click(widget.segment_button)
    assert len(np.unique(viewer.layers["current_object"].data)) - 1 == 3
    click(widget.commit_button)
    assert len(np.unique(viewer.layers["committed_objects"].data)) - 1 == 3


def test_several_boxes_give_several_objects(segment_widget):
    viewer, widget = segment_widget
    for obj in (1, 2):
        rows, cols = np.nonzero(NUCLEI.labels == obj)
        widget.box_layer.add_rectangles(np.array([[rows.min(), cols.min()], [rows.max(), cols.max()]], float))
    click(widget.segment_button)
    assert len(np.unique(viewer.layers["current_object"].data)) - 1 == 2


def test_toggle_switches_the_label_of_new_points(segment_widget):
    viewer, widget = segment_widget
    press(viewer, "t")
    assert widget.point_layer.current_properties["label"][0] == "negative"
    press(viewer, "t")
    assert widget.point_layer.current_properties["label"][0] == "positive"


def test_segmenting_without_prompts_is_a_notification(segment_widget):
    viewer, widget = segment_widget
    click(widget.segment_button)
    assert any("nothing to segment" in m for m in error_messages())
    assert not viewer.layers["current_object"].data.any()


def test_each_image_keeps_its_own_annotations(segment_widget, qtbot):
    viewer, widget = segment_widget
    place_points(widget, [_centre_of(1)], ["positive"])
    click(widget.segment_button)
    click(widget.commit_button)
    first = viewer.layers["committed_objects"].data.copy()

    viewer.open_sample("napari-sam-peft", "cells")
    click(widget.next_button)
    wait_for_worker(qtbot, widget)
    assert widget.image_choice.value == "cells (domain B)"
    assert not viewer.layers["committed_objects"].data.any()

    click(widget.previous_button)
    wait_for_worker(qtbot, widget)
    np.testing.assert_array_equal(viewer.layers["committed_objects"].data, first)


@pytest.mark.parametrize(
    ("data", "rgb", "message"),
    [
        (np.zeros((64, 64), dtype=np.uint8), False, "blank"),
        (np.ones((1, 1), dtype=np.uint8), False, "at least 8 x 8"),
        (np.full((64, 64), np.nan, dtype=np.float32), False, "NaN"),
        (np.zeros((64, 64, 4), dtype=np.uint8), True, "4 channels"),
        (np.zeros((2, 5, 64, 64), dtype=np.uint16), False, "4 dimensions"),
        (np.zeros((1, 64, 64), dtype=np.uint16), False, "open it as a 2D image"),
    ],
    ids=["empty", "one-pixel", "nan", "rgba", "4d", "one-slice"],
)
def test_bad_images_give_a_notification_not_a_traceback(segment_widget, qtbot, data, rgb, message):
    viewer, widget = segment_widget
    viewer.add_image(data, name="bad", rgb=rgb)
    widget.image_choice.value = "bad"
    wait_for_worker(qtbot, widget)
    assert any(message in m for m in error_messages()), error_messages()
    click(widget.segment_button)  # and segmenting on it is a notification too, not an exception


def _adapter_file(model, path, seed=1):
    import torch

    from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset

    handle = attach(model.sam, spec_from_preset("lora", model.architecture.depth, rank=4))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.3)
    adapter = Adapter.from_attached(handle, model)
    handle.detach()
    return adapter.save(path)


def test_attaching_an_adapter_in_the_widget_recomputes_embeddings_and_changes_masks(
    segment_widget, qtbot, tmp_path
):
    viewer, widget = segment_widget
    base_key = widget.embedding_key
    place_points(widget, [_centre_of(1)], ["positive"])
    click(widget.segment_button)
    base_mask = viewer.layers["current_object"].data.copy()

    path = _adapter_file(widget.session.model.loaded, tmp_path / "adapter.safetensors")
    widget.adapter_file.value = path
    click(widget.attach_button)
    wait_for_worker(qtbot, widget)
    try:
        assert widget.embedding_key != base_key
        assert widget.embedding_key.adapter_key == widget.session.model.adapter.identity
        assert "adapter lora" in widget.model_status.value
        place_points(widget, [_centre_of(1)], ["positive"])
        click(widget.segment_button)
        assert not np.array_equal(viewer.layers["current_object"].data, base_mask)
    finally:
        widget.session.model.set_adapter(None)  # the demo model is shared between tests
        wait_for_worker(qtbot, widget)
    assert widget.embedding_key == base_key


def test_a_bad_adapter_file_is_a_notification(segment_widget, tmp_path):
    _, widget = segment_widget
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not an adapter")
    widget.adapter_file.value = bad
    click(widget.attach_button)
    assert any("not a readable adapter" in m for m in error_messages())
    assert widget.session.model.adapter is None


def test_automatic_segmentation_pre_annotates_and_commits(segment_widget, qtbot, monkeypatch):
    viewer, widget = segment_widget
    proposal = NUCLEI.labels.astype(np.uint32)
    monkeypatch.setattr(widget.session.model, "automatic", lambda image, embeddings, progress=None, **_: proposal)
    click(widget.auto_button)
    wait_for_worker(qtbot, widget)
    auto = viewer.layers["auto_segmentation"]
    np.testing.assert_array_equal(auto.data, proposal)

    auto.data[auto.data == 1] = 0  # the user deletes a wrong proposal
    click(widget.commit_auto_button)
    committed = viewer.layers["committed_objects"].data
    assert len(np.unique(committed)) - 1 == NUCLEI.labels.max() - 1
    assert not viewer.layers["auto_segmentation"].data.any()


def test_automatic_segmentation_runs_micro_sams_generator(segment_widget, qtbot):
    viewer, widget = segment_widget
    click(widget.auto_button)
    wait_for_worker(qtbot, widget, timeout=120_000)
    auto = viewer.layers["auto_segmentation"].data
    assert auto.shape == NUCLEI.image.shape
    # The demo model is trained on this domain: most nuclei are proposed.
    assert len(np.unique(auto)) - 1 >= NUCLEI.labels.max() // 2


def test_open_folder_adds_an_image_series(segment_widget, qtbot, tmp_path):
    import imageio.v3 as iio

    viewer, widget = segment_widget
    for i in range(3):
        iio.imwrite(tmp_path / f"img_{i}.png", make_sample("cells", seed=i, shape=(64, 64)).image)
    type_folder(qtbot, widget, tmp_path)
    wait_for_worker(qtbot, widget)
    assert widget.image_choice.value == "img_0"
    click(widget.next_button)
    wait_for_worker(qtbot, widget)
    assert widget.image_choice.value == "img_1"
    assert widget.embeddings is not None


def type_folder(qtbot, widget, folder) -> None:
    """Type a folder into the Segment widget's folder field and press Enter, as a user does."""
    from qtpy.QtCore import Qt

    field = widget.folder.line_edit.native
    field.setFocus()
    qtbot.keyClicks(field, str(folder))
    qtbot.keyClick(field, Qt.Key.Key_Return)


def test_open_folder_without_images_is_a_notification(segment_widget, qtbot, tmp_path):
    _, widget = segment_widget
    type_folder(qtbot, widget, tmp_path)
    assert sum("No images" in m for m in error_messages()) == 1  # once, on Enter: not per keystroke


def test_segment_is_in_the_plugins_menu_and_layers_segment_submenu(make_napari_viewer):
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-sam-peft")
    names = {w.display_name for w in manifest.contributions.widgets}
    assert "Segment" in names
    assert manifest.contributions.submenus[0].label == "SAM PEFT"
    segment_menu = manifest.contributions.menus["napari/layers/segment"]
    assert segment_menu[0].submenu == "napari-sam-peft.sam_peft"
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-sam-peft", "Segment")
    assert type(widget).__name__ == "SegmentWidget"


def _back_to(qtbot, widget, name: str) -> None:
    """Images were just added (the widget shows the first of them): show image ``name`` again."""
    qtbot.waitUntil(lambda: widget.image_choice.value != name)
    widget.image_choice.value = name
    wait_for_worker(qtbot, widget, timeout=120_000)


def test_suggest_next_image_shows_the_unannotated_image_the_model_is_least_sure_of(segment_widget, qtbot):
    viewer, widget = segment_widget
    nuclei = widget.image_choice.value
    viewer.open_sample("napari-sam-peft", "cells")  # domain B: the demo model (trained on nuclei) is unsure
    viewer.add_image(make_sample("nuclei", seed=5).image, name="more nuclei")
    _back_to(qtbot, widget, nuclei)
    place_points(widget, [_centre_of(1)], ["positive"])
    press(viewer, "s")
    press(viewer, "c")  # the shown image now has an object: it is not a candidate
    click(widget.suggest_button)
    wait_for_worker(qtbot, widget, timeout=120_000)
    ranked = [name for name, _ in widget.suggest_panel.ranking]
    assert nuclei not in ranked and set(ranked) == {"cells (domain B)", "more nuclei"}
    assert ranked[0] == "cells (domain B)" and widget.image_choice.value == "cells (domain B)"
    assert "Suggested 'cells (domain B)'" in widget.suggest_status.value
    assert "'more nuclei'" in widget.suggest_status.native.toolTip()
    assert "predicted IoU" in widget.suggest_status.native.toolTip()


def test_suggest_with_every_image_annotated_says_so(segment_widget):
    viewer, widget = segment_widget
    place_points(widget, [_centre_of(1)], ["positive"])
    press(viewer, "s")
    press(viewer, "c")
    click(widget.suggest_button)
    assert any("Every image of the series has committed objects" in m for m in error_messages())


def test_a_live_decoder_pre_segments_an_image_opened_without_objects(segment_widget, qtbot, demo_model):
    import torch

    from napari_sam_peft.core.instance import build_decoder, decoder_state
    from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset

    viewer, widget = segment_widget
    handle = attach(demo_model.sam, spec_from_preset("freeze_encoder", demo_model.architecture.depth))
    torch.manual_seed(0)
    adapter = Adapter.from_attached(handle, demo_model, decoder=decoder_state(build_decoder(demo_model.sam)))
    handle.detach()
    viewer.open_sample("napari-sam-peft", "cells")
    viewer.add_image(make_sample("nuclei", seed=5).image, name="more nuclei")
    _back_to(qtbot, widget, widget.image_choice.choices[0])
    place_points(widget, [_centre_of(1)], ["positive"])
    press(viewer, "s")
    press(viewer, "c")
    widget.session.model.set_adapter(adapter)
    wait_for_worker(qtbot, widget, timeout=120_000)
    assert widget.automatic_panel.last_run is None  # the shown image has objects: left alone
    press(viewer, "n")
    qtbot.waitUntil(lambda: widget.automatic_panel.last_run is not None, timeout=120_000)
    assert widget.automatic_panel.last_run[0] == "cells (domain B)" and "AIS" in widget.automatic_panel.last_run[1]
    widget.presegment_box.value = False
    press(viewer, "n")
    wait_for_worker(qtbot, widget, timeout=120_000)
    assert widget.image_choice.value == "more nuclei"
    assert widget.automatic_panel.last_run[0] == "cells (domain B)"  # switched off: nothing ran
    widget.session.model.set_adapter(None)


def test_the_image_being_segmented_is_the_one_shown(segment_widget, qtbot):
    """Opened from the manifest the widget sees napari's layer proxies; it hid every image once."""
    viewer, widget = segment_widget
    viewer.add_image(make_sample("cells", seed=1, shape=(64, 64)).image, name="second")
    qtbot.waitUntil(lambda: widget.image_choice.value == "second")  # an image added later is shown at once
    wait_for_worker(qtbot, widget)
    assert viewer.layers["second"].visible and not viewer.layers["nuclei (domain A)"].visible
    press(viewer, "n")
    wait_for_worker(qtbot, widget)
    assert widget.image_choice.value == "nuclei (domain A)"
    assert viewer.layers["nuclei (domain A)"].visible and not viewer.layers["second"].visible


def test_the_base_model_button_and_the_finetune_switch_are_one_switch(segment_widget, qtbot, tmp_path):
    """Segment's 'Base model' and Finetune's 'segment with' show and set the same thing: a hot reload waits
    while the base model is chosen in either, and the adapter comes back from the other."""
    viewer, widget = segment_widget
    _, finetune = viewer.window.add_plugin_dock_widget("napari-sam-peft", "Finetune")
    model = widget.session.model
    first = _adapter_file(model.loaded, tmp_path / "first.safetensors")
    second = _adapter_file(model.loaded, tmp_path / "second.safetensors", seed=2)
    widget.adapter_file.value = first
    click(widget.attach_button)
    wait_for_worker(qtbot, widget)
    try:
        assert finetune.compare.value == "adapter"
        click(widget.detach_button)
        wait_for_worker(qtbot, widget)
        assert model.adapter is None and model.base_only and finetune.compare.value == "base model"
        model.reload_adapter(second)  # a training run's new best adapter arrives: it waits
        assert model.finish_reload(timeout=None) == "idle" and model.adapter is None
        finetune.compare.value = "adapter"  # back from the other dock: the newest adapter
        wait_for_worker(qtbot, widget)
        assert model.adapter is not None and model.adapter_path == second and not model.base_only
        assert "adapter lora" in widget.model_status.value
    finally:
        model.use_base(False)
        model.set_adapter(None)  # the demo model is shared between tests
        wait_for_worker(qtbot, widget)
