"""The Segment widget's volume panel: propagate the current object through z (``Shift+S``), stop it,
and micro_sam's propagation settings. Shown only while a volume is annotated.

The object is segmented on every slice that holds prompts (a slice with only negative points is a
stop slice, at either end) and carried through the volume on a worker thread, with a progress bar;
Stop ends it and leaves the current object as it was.
"""

from __future__ import annotations

from typing import Any

import napari
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton
from napari.utils.notifications import show_info

from napari_sam_peft._qt import prompt_layers
from napari_sam_peft._qt.background import BackgroundJobs
from napari_sam_peft._qt.dock_layout import on_click, wrapping
from napari_sam_peft._qt.segment_image import ImagePanel
from napari_sam_peft._qt.segment_prompts import PromptPanel
from napari_sam_peft._qt.user_errors import user_errors
from napari_sam_peft.core.volume.propagation import (
    MEMORY_PROPAGATION,
    PROJECTIONS,
    Propagated,
    PropagationSettings,
    StoppedError,
    default_settings,
    projections_for,
    propagates_with_memory,
)
from napari_sam_peft.session import Annotator, AnnotatorSession
from napari_sam_peft.session.volume_annotator import VolumeAnnotator

DEFAULTS = PropagationSettings()  # micro_sam's annotator_3d defaults (a model may change the projection's)


class VolumePanel:
    """Propagation of the current object through a volume's slices."""

    def __init__(
        self,
        viewer: napari.Viewer,
        session: AnnotatorSession,
        jobs: BackgroundJobs,
        image: ImagePanel,
        prompts: PromptPanel,
    ) -> None:
        self.viewer = viewer
        self.session = session
        self.jobs = jobs
        self.image = image
        self.prompts = prompts
        self._stop = False
        self.running = False
        self._defaults_for: object = None  # the base model whose default projection the panel shows
        self.projection = ComboBox(
            label="projection",
            choices=list(PROJECTIONS),
            value=DEFAULTS.projection,
            tooltip="How the object is carried to the next slice (micro_sam's projection modes)",
        )
        self.iou_threshold = FloatSpinBox(
            label="IoU stop",
            value=DEFAULTS.iou_threshold,
            min=0.0,
            max=1.0,
            step=0.05,
            tooltip="Stop where the masks of neighbouring slices overlap less than this (IoU)",
        )
        self.propagate_button = PushButton(text="Propagate [Shift+S]")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.status = wrapping(Label(value=""))
        self.rows = [  # one setting per row, labelled as the widget's other settings are, so the dock stays narrow
            self.projection,
            self.iou_threshold,
            Container(widgets=[self.propagate_button, self.stop_button], layout="horizontal", labels=False),
        ]
        on_click(self.propagate_button, self.propagate)
        on_click(self.stop_button, self.stop)
        self.show_for(None)

    @property
    def widgets(self) -> list[Any]:
        """The panel's widgets, top to bottom."""
        return [*self.rows, self.status]

    def show_for(self, annotator: Annotator | None) -> None:
        """Show the panel while a volume is annotated, hide it for 2D images."""
        visible = annotator is not None and annotator.is_volume
        for widget in self.widgets:
            widget.visible = visible
        loaded = self.session.model.loaded
        memory = loaded is not None and propagates_with_memory(loaded.sam)
        self.projection.visible = self.iou_threshold.visible = visible and not memory
        if visible and loaded is not None and not memory:
            self.projection.choices = list(projections_for(loaded.sam))
            if self._defaults_for is not loaded:  # a new base model: its default (box for LiteMedSAM)
                self._defaults_for = loaded
                self.projection.value = default_settings(loaded.architecture).projection
        self.status.value = MEMORY_PROPAGATION if visible and memory else ""

    def follow_model(self, *_: object) -> None:
        """A new base model: show the propagation settings it takes (none for SAM 2.1's memory)."""
        shown = self.session.shown
        self.show_for(shown if isinstance(shown, VolumeAnnotator) else None)

    def settings(self) -> PropagationSettings:
        """The propagation settings the widgets show."""
        return PropagationSettings(projection=self.projection.value, iou_threshold=float(self.iou_threshold.value))

    def propagate(self) -> None:
        """Segment the object on its prompted slices and carry it through the volume (``Shift+S``)."""
        volume = self.session.shown
        if not isinstance(volume, VolumeAnnotator):  # the volume-only control
            show_info("Propagation is for volumes (Z, Y, X): this image is 2D. Use Segment [S].")
            return
        if self.running:
            show_info("A propagation is running: wait for it, or Stop it.")
            return
        points, boxes = self.prompts.point_layer, self.prompts.box_layer
        with user_errors() as outcome:
            self.session.model.require()
            settings = self.settings()
            by_slice = {}
            for z in prompt_layers.prompted_slices(points, boxes):
                (obj,) = prompt_layers.read_prompts(points, boxes, False, z=z)[:1]
                by_slice[z] = obj
        if outcome.failed:
            return
        if not by_slice:
            show_info("Place a box or points on a slice of the object first, then propagate (Shift+S).")
            return
        self._stop, self.running = False, True
        self.stop_button.enabled, self.propagate_button.enabled = True, False
        self.status.value = f"Propagating from slice(s) {', '.join(map(str, by_slice))}..."

        def work(report: Any) -> Propagated | None:
            try:
                return volume.propagate_prompts(by_slice, settings, report, should_stop=lambda: self._stop)
            except StoppedError:
                return None

        def done(result: Propagated | None) -> None:
            self._finished()
            if result is None:
                self.status.value = "Propagation stopped; the current object is unchanged."
                return
            self.prompts.set_current(result.mask, list(by_slice.values()))
            first, last = result.z_range
            self.status.value = f"Propagated through slices {first}-{last} ({result.n_slices} slices). Commit: C."

        self.jobs.run("Propagating the object through z", work, done)

    def stop(self) -> None:
        """Stop a running propagation after the slice it is on."""
        self._stop = True
        self.status.value = "Stopping..."

    def failed(self) -> None:
        """A job of the widget failed (its notification says why): propagation may run again."""
        if self.running:
            self._finished()
            self.status.value = "Propagation failed: see the notification."

    def _finished(self) -> None:
        self.running = False
        self.stop_button.enabled, self.propagate_button.enabled = False, True
