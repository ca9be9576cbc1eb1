"""The Segment widget's "Suggest" (next image): the series' unannotated image the model is least sure of.

Each image layer without committed objects is embedded (through the cache, so opening it later is
instant) and scored with the live model's own confidence (see
:mod:`napari_sam_peft.core.annotation.uncertainty`); the least confident one is shown, and the
notification says why and what comes after it.
"""

from __future__ import annotations

from typing import Any

import napari
import numpy as np
from magicgui.widgets import Label, PushButton
from napari.utils.notifications import show_info

from napari_sam_peft._qt.background import BackgroundJobs
from napari_sam_peft._qt.dock_layout import on_click, show_text, wrapping
from napari_sam_peft._qt.image_series import image_layer_names
from napari_sam_peft._qt.segment_image import ImagePanel
from napari_sam_peft._qt.user_errors import user_errors
from napari_sam_peft.core.annotation.images import check_image
from napari_sam_peft.core.annotation.uncertainty import Uncertainty
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.session import AnnotatorSession

Ranking = list[tuple[str, Uncertainty]]


class SuggestPanel:
    """The "Suggest" (next image) button and the line that says what it picked."""

    def __init__(
        self, viewer: napari.Viewer, session: AnnotatorSession, jobs: BackgroundJobs, image: ImagePanel
    ) -> None:
        self.viewer, self.session, self.jobs, self.image = viewer, session, jobs, image
        self.button = PushButton(
            text="Suggest",
            tooltip="Suggest the next image to annotate: rank the images without objects by how unsure the "
            "current model is there, and show the most unsure",
        )
        self.status = wrapping(Label(value=""))
        self.status.visible = False  # shown once there is a suggestion
        self.ranking: Ranking = []
        on_click(self.button, self.suggest)

    @property
    def widgets(self) -> list[Any]:
        """The panel's widgets, top to bottom."""
        return [self.button, self.status]

    def candidates(self) -> list[tuple[str, np.ndarray, bool]]:
        """(name, pixels, rgb) of every image layer that can be segmented and has no committed objects."""
        found = []
        for name in image_layer_names(self.viewer):
            layer = self.viewer.layers[name]
            try:
                pixels = check_image(layer.data, layer.rgb)
            except SamPeftError:
                continue
            if not self.session.annotations.has_objects(name, pixels):
                found.append((name, pixels, layer.rgb))
        return found

    def suggest(self) -> None:
        """Score the candidates on a worker thread, then show the most uncertain one."""
        with user_errors() as outcome:
            self.session.model.require()
            candidates = self.candidates()
            if not candidates:
                raise SamPeftError("Every image of the series has committed objects: open more images to suggest.")
        if outcome.failed:
            return

        def rank(report) -> Ranking:
            scored = []
            for index, (name, pixels, rgb) in enumerate(candidates):
                scored.append((name, self.session.uncertainty(pixels, rgb)))
                report(index + 1, len(candidates))
            return sorted(scored, key=lambda item: -item[1].score)

        self.jobs.run("Ranking images by uncertainty", rank, self._show)

    def _show(self, ranking: Ranking) -> None:
        self.ranking = ranking
        name, best = ranking[0]
        text = f"Suggested '{name}': the most unsure of {len(ranking)} ({best.score:.2f})"
        why = "\n".join(f"'{n}': uncertainty {u.score:.2f} ({u.why()})" for n, u in ranking)
        show_text(self.status, text, tooltip=f"1 - predicted IoU x stability of the model's masks:\n{why}")
        self.status.visible = True
        show_info(f"Annotate '{name}' next: the model is least sure there ({best.why()}).")
        if name in self.viewer.layers:
            self.image.image_choice.value = name
