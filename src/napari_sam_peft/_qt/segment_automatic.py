"""The Segment widget's automatic panel: pre-annotate the image, let the user fix it, commit what is left.

"Automatic" runs the session's automatic segmentation: instance segmentation with the live
adapter's decoder (AIS) where there is one, else micro_sam's mask generation (AMG); the
notification says which ran. With "pre-segment" on and a decoder live, every image
opened without objects (Next, N) is pre-segmented at once, so the user corrects instead of
starting over.
"""

from __future__ import annotations

from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, Container, PushButton
from napari.utils.notifications import show_info

from napari_sam_peft._qt import prompt_layers
from napari_sam_peft._qt.background import BackgroundJobs
from napari_sam_peft._qt.dock_layout import on_click, show_text
from napari_sam_peft._qt.segment_commits import CommitsPanel
from napari_sam_peft._qt.segment_image import ImagePanel
from napari_sam_peft._qt.user_errors import user_errors
from napari_sam_peft.core.annotation.commits import automatic_sources, object_ids
from napari_sam_peft.session import AnnotatorSession

LAYER = "auto_segmentation"


class AutomaticPanel:
    """The "Automatic" and "Commit automatic" buttons, and pre-segmentation of new images."""

    def __init__(
        self,
        viewer: napari.Viewer,
        session: AnnotatorSession,
        jobs: BackgroundJobs,
        image: ImagePanel,
        commits: CommitsPanel,
    ) -> None:
        self.viewer = viewer
        self.session = session
        self.jobs = jobs
        self.image = image
        self.commits = commits
        self.proposal: np.ndarray | None = None  # what the model proposed, to tell edited objects apart
        self.proposed_for: str | None = None  # the image the proposal belongs to
        self.last_run: tuple[str, str] | None = None  # (image, method) of the last result shown
        self.run_button = PushButton(text="Automatic", tooltip="Segment every object of the image automatically")
        self.commit_button = PushButton(text="Commit automatic", tooltip=f"Commit the objects left in {LAYER}")
        self.presegment = CheckBox(
            text="pre-segment",
            value=True,
            tooltip="Once an adapter with an instance decoder is live (finetuned with 'Train the instance "
            "decoder'), segment each image opened without objects automatically, ready to correct",
        )
        self.row = Container(widgets=[self.run_button, self.commit_button], layout="horizontal", labels=False)
        on_click(self.run_button, self.run)
        on_click(self.commit_button, self.commit)
        image.embedded.connect(self._embedded)

    @property
    def widgets(self) -> list[Any]:
        """The panel's widgets, top to bottom."""
        return [self.row, self.presegment]

    def leave(self) -> None:
        """The proposal belongs to the image being left: clear it."""
        if LAYER in self.viewer.layers:
            layer = self.viewer.layers[LAYER]
            layer.data = np.zeros_like(layer.data)
        self.proposal, self.proposed_for = None, None

    def _embedded(self, name: str) -> None:
        """Pre-segment a newly shown image (or volume) without objects, when an instance decoder is live."""
        annotator = self.session.shown
        if not self.presegment.value or not self.session.model.decoder.is_live or name == self.proposed_for:
            return
        if annotator is None or annotator.name != name:
            return
        with user_errors() as outcome:
            annotated = self.session.annotations.has_objects(name, annotator.data, volume=annotator.is_volume)
        if not outcome.failed and not annotated:
            self.run()

    def run(self) -> None:
        """Pre-annotate the whole image into ``auto_segmentation`` on a worker thread (a volume: slice by
        slice, objects merged across z)."""
        with user_errors() as outcome:
            annotator = self.image.require()
        if outcome.failed:
            return
        method = annotator.automatic_method
        self.jobs.run(
            annotator.automatic_title,
            lambda report: annotator.automatic(progress=report),
            lambda segmentation: self._show(segmentation, annotator.name, method),
        )

    def _show(self, segmentation: np.ndarray, name: str, method: str) -> None:
        if name != self.image.name:  # the user moved on while it ran
            return
        prompt_layers.labels_layer(self.viewer, LAYER, segmentation.shape).data = segmentation
        self.proposal, self.proposed_for = segmentation.copy(), name
        self.last_run = (name, method)
        n = len(object_ids(segmentation))
        if n == 0:
            message = (
                f"Automatic segmentation ({method}) found no objects on this image: segment with prompts "
                "instead (box or points, then S)."
            )
        else:
            message = (
                f"Automatic segmentation ({method}) found {n} objects: delete or fix the wrong ones in "
                f"'{LAYER}', then 'Commit automatic'."
            )
        show_info(message)
        show_text(self.image.embedding_status, message)  # the dock keeps it after the notification

    def commit(self) -> None:
        """Commit every object left in ``auto_segmentation`` (after the user deleted or fixed some)."""
        if LAYER not in self.viewer.layers or not self.viewer.layers[LAYER].data.any():
            show_info("No automatic objects to commit: click 'Automatic' first.")
            return
        layer = self.viewer.layers[LAYER]
        self.commits.commit(layer.data, sources=automatic_sources(layer.data, self.proposal))
        layer.data = np.zeros_like(layer.data)
