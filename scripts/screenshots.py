"""Take the documentation's screenshots from a real napari window.

Run under a virtual screen: ``xvfb-run -a python scripts/screenshots.py``. Each shot is
written to docs/images/.
"""

from __future__ import annotations

from pathlib import Path

import napari

from napari_sam_peft.cli.demo import dock_widgets, fit_window_to_screen, open_demo_samples

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def _save(viewer: napari.Viewer, name: str, canvas_only: bool = False) -> None:
    """Save a screenshot of the window filling the (virtual) screen; names get the screen size if not 1600x1000."""
    from qtpy.QtWidgets import QApplication

    OUT.mkdir(parents=True, exist_ok=True)
    fit_window_to_screen(viewer)
    for _ in range(20):
        QApplication.processEvents()
    viewer.reset_view()  # fit the layers to the final canvas size
    QApplication.processEvents()
    size = QApplication.primaryScreen().size()
    if (size.width(), size.height()) != (1600, 1000):
        name = name.replace(".png", f"_{size.width()}x{size.height()}.png")
    viewer.screenshot(str(OUT / name), canvas_only=canvas_only)
    print(f"wrote {OUT / name}")


def _click(button) -> None:
    """Click a widget's button as a user does."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    QTest.mouseClick(button.native, Qt.MouseButton.LeftButton)


def _front(widget) -> None:
    """Bring the dock holding ``widget`` to the front of its tab group."""
    from napari_sam_peft._qt.dock_layout import _dock_of

    _dock_of(widget.native).raise_()


def _load_demo_and_wait(widget) -> None:
    """Load the demo model into the Segment widget's session and wait for the embeddings."""
    from qtpy.QtWidgets import QApplication

    from napari_sam_peft.core.sam.loading import load_model

    widget.session.model.set_base(load_model("demo", device="cpu"))
    app = QApplication.instance()
    while widget.active_workers or widget.embeddings is None:
        app.processEvents()


def _centre(labels, obj) -> list[float]:
    import numpy as np

    rows, cols = np.nonzero(labels == obj)
    return [rows.mean(), cols.mean()]


def _commit_at_centres(widget, labels, objects) -> None:
    """Segment and commit each object from one positive point at its centre, as a user would."""
    import numpy as np

    for obj in objects:
        widget.point_layer.data = np.array([_centre(labels, obj)])
        widget.point_layer.properties = {"label": np.array(["positive"])}
        _click(widget.segment_button)
        _click(widget.commit_button)


def samples() -> None:
    viewer = napari.Viewer(title="napari-sam-peft")
    viewer.open_sample("napari-sam-peft", "nuclei")
    viewer.open_sample("napari-sam-peft", "cells")
    for name in ("nuclei (domain A) ground truth", "cells (domain B) ground truth"):
        viewer.layers[name].visible = True
        viewer.layers[name].contour = 2
    viewer.canvas.grid.stride = 2  # each image shares its grid cell with its labels
    viewer.canvas.grid.enabled = True
    viewer.reset_view()
    _save(viewer, "napari_samples.png")
    viewer.close()


def segment_widget() -> None:
    """The Segment widget docked, with point and box prompts, a current object and commits."""
    import numpy as np

    from napari_sam_peft._qt.segment_widget import SegmentWidget
    from napari_sam_peft.core.data.sample_data import make_sample

    viewer = napari.Viewer(title="napari-sam-peft")
    viewer.open_sample("napari-sam-peft", "nuclei")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment", area="right")
    _load_demo_and_wait(widget)
    labels = make_sample("nuclei", seed=0).labels
    _commit_at_centres(widget, labels, (1, 2, 3))
    rows, cols = np.nonzero(labels == 5)
    widget.box_layer.add_rectangles(np.array([[rows.min(), cols.min()], [rows.max(), cols.max()]], float))
    widget.point_layer.data = np.array([_centre(labels, 4), [20.0, 20.0]])
    widget.point_layer.properties = {"label": np.array(["positive", "negative"])}
    widget.batch_mode.value = True
    _click(widget.segment_button)
    widget.point_layer.size = 6
    viewer.reset_view()
    _save(viewer, "segment_widget.png")
    viewer.close()


def dataset_widget() -> None:
    """The Dataset widget next to the Segment widget, with committed objects recorded in a store."""
    import tempfile

    from napari_sam_peft._qt.dataset_widget import DatasetWidget
    from napari_sam_peft._qt.segment_widget import SegmentWidget
    from napari_sam_peft.core.data.sample_data import make_sample

    viewer = napari.Viewer(title="napari-sam-peft")
    viewer.open_sample("napari-sam-peft", "nuclei")
    viewer.open_sample("napari-sam-peft", "cells")
    segment = SegmentWidget(viewer)
    dataset = DatasetWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment", area="right")
    viewer.window.add_dock_widget(dataset, name="Dataset", area="right", tabify=True)
    dataset.open_store(Path(tempfile.mkdtemp()) / "annotations.sampeft.zarr")
    dataset.import_image.value = "cells (domain B)"
    dataset.import_labels.value = "cells (domain B) ground truth"
    _click(dataset.import_button)
    segment.image_choice.value = "nuclei (domain A)"
    _load_demo_and_wait(segment)
    _commit_at_centres(segment, make_sample("nuclei", seed=0).labels, range(1, 7))
    viewer.reset_view()
    _front(dataset)
    _save(viewer, "dataset_widget.png")
    viewer.close()


def _wait(condition) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    while not condition():
        app.processEvents()


def _demo_viewer(workdir: Path):
    """The demo's window: domain-B images, Segment + Dataset + Finetune, demo model, a store."""
    viewer = napari.Viewer(title="napari-sam-peft demo")
    open_demo_samples(viewer, "cells")
    dock_widgets(viewer, store=workdir / "cells.sampeft.zarr")
    widgets = {type(w).__name__: w for w in viewer.window.dock_widgets.values()}
    segment = widgets["SegmentWidget"]
    _wait(lambda: not segment.active_workers and segment.embeddings is not None)
    return viewer, widgets


def correct() -> None:
    """Correcting the demo model on domain B: automatic proposals, then a box and correction clicks."""
    import tempfile

    import numpy as np

    viewer, widgets = _demo_viewer(Path(tempfile.mkdtemp()))
    segment = widgets["SegmentWidget"]
    _click(segment.auto_button)
    _wait(lambda: not segment.active_workers)
    truth = viewer.layers["cells (domain B) 1 ground truth"].data
    rows, cols = np.nonzero(truth == 3)
    segment.box_layer.add_rectangles(np.array([[rows.min(), cols.min()], [rows.max(), cols.max()]], float))
    inside = _centre(truth, 3)
    segment.point_layer.data = np.array([inside, [rows.min() - 4.0, cols.min() - 4.0]])
    segment.point_layer.properties = {"label": np.array(["positive", "negative"])}
    _click(segment.segment_button)
    segment.point_layer.size = 6
    viewer.reset_view()
    _front(segment)
    _save(viewer, "correct.png")
    viewer.close()


def finetune_and_compare() -> None:
    """A finished run in the Finetune widget (curves, evaluation table), then base vs adapter masks."""
    import tempfile

    import numpy as np

    from napari_sam_peft.core.annotation.prompting import ObjectPrompts

    viewer, widgets = _demo_viewer(Path(tempfile.mkdtemp()))
    dataset, finetune, segment = widgets["DatasetWidget"], widgets["FinetuneWidget"], widgets["SegmentWidget"]
    for index, split in ((1, "train"), (2, "train"), (3, "val")):
        dataset.import_image.value = f"cells (domain B) {index}"
        dataset.import_labels.value = f"cells (domain B) {index} ground truth"
        _click(dataset.import_button)
        image_id = dataset.store.snapshot().images[-1].image_id
        dataset.store.set_split(image_id, split)
    dataset.refresh()
    finetune.steps.value = "30"
    finetune.validate_every.value = 5
    finetune.lr.value = "1e-3"
    _click(finetune.start_button)
    process = finetune.process
    _wait(lambda: process.terminal_event is not None and not finetune._timer.isActive())
    _wait(lambda: not segment.active_workers)
    _front(finetune)
    viewer.reset_view()
    _save(viewer, "finetune_widget.png")

    truth = viewer.layers["cells (domain B) 1 ground truth"].data
    boxes = []
    for obj in [i for i in np.unique(truth) if i]:
        rows, cols = np.nonzero(truth == obj)
        boxes.append(ObjectPrompts(box=[rows.min(), cols.min(), rows.max(), cols.max()]))
    results = {}
    for choice in ("base model", "adapter"):
        finetune.compare.value = choice
        _wait(lambda: not segment.active_workers and segment.embeddings is not None)
        masks = segment.session.model.segment(segment.embeddings, boxes)
        labels = np.zeros(truth.shape, np.uint32)
        for index, mask in enumerate(masks, start=1):
            labels[mask & (labels == 0)] = index
        results[choice] = labels
    image = viewer.layers["cells (domain B) 1"].data
    viewer.close()
    side_by_side = napari.Viewer(title="base vs adapter")  # the canvas alone: left base, right adapter
    for choice, labels in results.items():
        side_by_side.add_image(image, name=f"image ({choice})")
        side_by_side.add_labels(labels, name=f"box prompts, {choice}", opacity=0.6)
    side_by_side.canvas.grid.enabled = True
    side_by_side.canvas.grid.stride = 2
    _save(side_by_side, "compare.png", canvas_only=True)
    side_by_side.close()


if __name__ == "__main__":
    import os
    import tempfile

    os.environ["HOME"] = tempfile.mkdtemp()  # the default store goes here, not into the user's home
    samples()
    segment_widget()
    dataset_widget()
    correct()
    finetune_and_compare()
