"""The docks as a user reads them, and their panels sharing one session."""

from __future__ import annotations

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


def _flat(shown: list) -> list[str]:
    return [item for entry in shown for item in (_flat(entry) if isinstance(entry, list) else [entry])]


def _dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-sam-peft", name)[1]


def test_the_segment_dock_reads_in_the_order_of_the_loop_and_names_its_keys(make_napari_viewer):
    """Top to bottom as a user works: load a model, pick an image, prompt, segment, commit."""
    viewer = make_napari_viewer()
    seen = _flat(_shown(_dock(viewer, "Segment")))
    steps = ["Load model", "image", "Segment [S]", "Commit [C]", "Automatic"]
    assert [seen.index(step) for step in steps] == sorted(seen.index(step) for step in steps)
    for key in ("[S]", "[C]", "[Shift+C]", "[U]"):  # the shortcut is on the button the key stands for
        assert any(key in text for text in seen), key


def test_the_dataset_dock_opens_a_store_before_it_lists_and_imports(make_napari_viewer):
    viewer = make_napari_viewer()
    seen = _flat(_shown(_dock(viewer, "Dataset")))
    steps = ["Open / create store", "<table>", "Set split", "Import image + labels"]
    assert [seen.index(step) for step in steps] == sorted(seen.index(step) for step in steps)


def test_the_segment_panels_share_the_viewers_session_and_its_store(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    segment, dataset = _dock(viewer, "Segment"), _dock(viewer, "Dataset")
    panels = [segment.model_panel, segment.image_panel, segment.prompt_panel, segment.automatic_panel]
    panels += [segment.suggest_panel]
    panels += [segment.commits_panel, dataset.store_panel, dataset.images_panel, dataset.import_panel]
    assert all(panel.session is segment.session for panel in panels)
    store = dataset.open_store(tmp_path / "shared.sampeft.zarr")
    assert str(store.path) in segment.store_status.native.toolTip()  # the store panel's store, said by Segment
