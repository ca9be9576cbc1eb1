"""Opening the sample data from napari's File > Open Sample menu, in a real viewer."""

import numpy as np
import pytest

from napari_sam_peft.core.data.sample_data import make_sample


@pytest.mark.parametrize(("key", "image_name"), [("nuclei", "nuclei (domain A)"), ("cells", "cells (domain B)")])
def test_open_sample_adds_an_image_and_its_ground_truth(make_napari_viewer, key, image_name):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-peft", key)

    assert [layer.name for layer in viewer.layers] == [image_name, f"{image_name} ground truth"]
    image, labels = viewer.layers
    assert image._type_string == "image" and labels._type_string == "labels"
    expected = make_sample(key, seed=0)
    np.testing.assert_array_equal(image.data, expected.image)
    np.testing.assert_array_equal(labels.data, expected.labels)
    assert labels.visible is False  # ground truth stays out of the way until asked for


def test_sample_menu_lists_the_plugin(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    window = viewer.window._qt_window
    titles = []
    for action in window.menuBar().actions():
        menu = action.menu()
        if menu is None:
            continue
        for sub in menu.actions():
            if sub.menu() is not None and "Sample" in sub.text():
                titles += [a.text() for a in sub.menu().actions()]
                for a in sub.menu().actions():
                    if a.menu() is not None:
                        titles += [b.text() for b in a.menu().actions()]
    assert any("Nuclei, bright and round" in t for t in titles), titles


@pytest.mark.slow
def test_demo_docks_segment_dataset_and_finetune_on_domain_b(make_napari_viewer, qtbot, tmp_path):
    from napari_sam_peft.cli.demo import DEMO_IMAGES, dock_widgets, open_demo_samples

    viewer = make_napari_viewer()
    open_demo_samples(viewer, "cells")
    dock_widgets(viewer, store=tmp_path / "cells.sampeft.zarr")
    widgets = {type(w).__name__: w for w in viewer.window.dock_widgets.values()}
    assert {"SegmentWidget", "DatasetWidget", "FinetuneWidget"} <= set(widgets)
    segment = widgets["SegmentWidget"]
    qtbot.waitUntil(lambda: not segment.active_workers and segment.embeddings is not None, timeout=60_000)
    assert segment.session.model.loaded.identity.name == "lite_medsam"  # the demo opens on real weights
    assert segment.model_choice.value == "lite_medsam"
    images = [layer.name for layer in viewer.layers if layer.__class__.__name__ == "Image"]
    assert len(images) == DEMO_IMAGES and all("domain B" in name for name in images)
    assert (
        segment.session.annotations.store is not None
        and segment.session.annotations.store.path.name == "cells.sampeft.zarr"
    )
    assert widgets["FinetuneWidget"].preset.value == "late_lora"
