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
    from qtpy.QtWidgets import QApplication

    from napari_sam_peft._qt.segment_widget import SegmentWidget
    from napari_sam_peft.core.models import load_model
    from napari_sam_peft.core.sample_data import make_sample

    viewer = napari.Viewer(title="napari-sam-peft")
    viewer.open_sample("napari-sam-peft", "nuclei")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment", area="right")
    widget.session.set_model(load_model("demo", device="cpu"))
    app = QApplication.instance()
    while widget.active_workers or widget.embeddings is None:
        app.processEvents()
    labels = make_sample("nuclei", seed=0).labels

    def centre(obj):
        rows, cols = np.nonzero(labels == obj)
        return [rows.mean(), cols.mean()]

    for obj in (1, 2, 3):
        widget.point_layer.data = np.array([centre(obj)])
        widget.point_layer.properties = {"label": np.array(["positive"])}
        widget.segment()
        widget.commit()
    rows, cols = np.nonzero(labels == 5)
    widget.box_layer.add_rectangles(np.array([[rows.min(), cols.min()], [rows.max(), cols.max()]], float))
    widget.point_layer.data = np.array([centre(4), [20.0, 20.0]])
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

    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_sam_peft._qt.dataset_widget import DatasetWidget
    from napari_sam_peft._qt.segment_widget import SegmentWidget
    from napari_sam_peft.core.models import load_model
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
    segment.session.set_model(load_model("demo", device="cpu"))
    segment.image_choice.value = "nuclei (domain A)"
    app = QApplication.instance()
    while segment.active_workers or segment.embeddings is None:
        app.processEvents()
    labels = make_sample("nuclei", seed=0).labels
    for obj in range(1, 7):
        rows, cols = np.nonzero(labels == obj)
        segment.point_layer.data = np.array([[rows.mean(), cols.mean()]])
        segment.point_layer.properties = {"label": np.array(["positive"])}
        segment.segment()
        segment.commit()
    viewer.reset_view()
    dataset.native.parent().raise_()
    _save(viewer, "dataset_widget.png")
    viewer.close()


if __name__ == "__main__":
    samples()
    segment_widget()
    dataset_widget()
