"""Take the documentation's screenshots from a real napari window.

Run under a virtual screen: ``xvfb-run -a python scripts/screenshots.py``. Each shot is
written to docs/images/.
"""

from __future__ import annotations

from pathlib import Path

import napari

from napari_sam_peft.cli.demo import open_demo_samples

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def _save(viewer: napari.Viewer, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.resize(1400, 860)
    napari.qt.get_qapp().processEvents()
    viewer.screenshot(str(OUT / name), canvas_only=False)
    print(f"wrote {OUT / name}")


def _load_demo_and_wait(widget) -> None:
    """Load the demo model into the Segment widget's session and wait for the embeddings."""
    from qtpy.QtWidgets import QApplication

    from napari_sam_peft.core.models import load_model

    widget.session.set_model(load_model("demo", device="cpu"))
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
        widget.segment()
        widget.commit()


def samples() -> None:
    viewer = napari.Viewer(title="napari-sam-peft")
    open_demo_samples(viewer, "both")
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
    from napari_sam_peft.core.sample_data import make_sample

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
    widget.segment()
    widget.point_layer.size = 6
    viewer.reset_view()
    _save(viewer, "segment_widget.png")
    viewer.close()


def dataset_widget() -> None:
    """The Dataset widget next to the Segment widget, with committed objects recorded in a store."""
    import tempfile

    from napari_sam_peft._qt.dataset_widget import DatasetWidget
    from napari_sam_peft._qt.segment_widget import SegmentWidget
    from napari_sam_peft.core.sample_data import make_sample

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
    dataset.import_button.changed.emit(True)
    segment.image_choice.value = "nuclei (domain A)"
    _load_demo_and_wait(segment)
    _commit_at_centres(segment, make_sample("nuclei", seed=0).labels, range(1, 7))
    viewer.reset_view()
    dataset.native.parent().raise_()
    _save(viewer, "dataset_widget.png")
    viewer.close()


if __name__ == "__main__":
    samples()
    segment_widget()
    dataset_widget()
