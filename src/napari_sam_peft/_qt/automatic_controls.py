"""The Segment widget's automatic pre-annotation: run it, let the user fix it, commit what is left."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import PushButton
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from napari_sam_peft._qt import prompt_layers
from napari_sam_peft._qt.dock_layout import on_click
from napari_sam_peft._qt.progress import ProgressRelay
from napari_sam_peft.core.annotation.images import check_image
from napari_sam_peft.core.errors import SamPeftError

if TYPE_CHECKING:
    from napari_sam_peft._qt.segment_widget import SegmentWidget

LAYER = "auto_segmentation"


class AutomaticControls:
    """The "Automatic" and "Commit automatic" buttons of a :class:`SegmentWidget`."""

    def __init__(self, widget: SegmentWidget) -> None:
        self.widget = widget
        self.proposal: np.ndarray | None = None  # what the model proposed, to tell edited objects apart
        self.run_button = PushButton(text="Automatic", tooltip="Segment every object of the image automatically")
        self.commit_button = PushButton(text="Commit automatic", tooltip=f"Commit the objects left in {LAYER}")
        on_click(self.run_button, self.run)
        on_click(self.commit_button, self.commit)

    def run(self) -> None:
        """Pre-annotate the whole image into ``auto_segmentation`` on a worker thread."""
        widget = self.widget
        try:
            embeddings = widget._require_embeddings()
            layer = widget.image_layer
            image = check_image(layer.data, layer.rgb)
        except SamPeftError as err:
            show_error(str(err))
            return
        relay = ProgressRelay("Automatic segmentation")

        @thread_worker
        def work():
            return widget.session.automatic(image, embeddings, progress=relay.report, rgb=layer.rgb)

        def done(segmentation):
            relay.close()
            prompt_layers.labels_layer(widget.viewer, LAYER, segmentation.shape).data = segmentation
            self.proposal = segmentation.copy()
            n = int(len(np.unique(segmentation)) - 1)
            if n == 0:
                show_info(
                    "Automatic segmentation found no objects on this image: segment with prompts instead "
                    "(box or points, then S)."
                )
            else:
                show_info(
                    f"Automatic segmentation found {n} objects: delete or fix the wrong ones in "
                    f"'{LAYER}', then 'Commit automatic'."
                )

        widget._run(work(), on_return=done)

    def commit(self) -> None:
        """Commit every object left in ``auto_segmentation`` (after the user deleted or fixed some)."""
        viewer = self.widget.viewer
        if LAYER not in viewer.layers or not viewer.layers[LAYER].data.any():
            show_info("No automatic objects to commit: click 'Automatic' first.")
            return
        layer = viewer.layers[LAYER]
        old_ids = [int(i) for i in np.unique(layer.data) if i != 0]
        sources = [
            "automatic"
            if self.proposal is not None and np.array_equal(layer.data == obj, self.proposal == obj)
            else "automatic-edited"
            for obj in old_ids
        ]
        new_ids = self.widget._commit_labels(layer.data)
        self.widget.record_current(sources=dict(zip(new_ids, sources, strict=True)))
        layer.data = np.zeros_like(layer.data)
