"""The Segment widget's prompts panel: points and boxes to masks, commit, clear and undo.

Layers and keys follow micro_sam (see :mod:`.prompt_layers`): ``S`` segment, ``C`` commit,
``Shift+C`` clear prompts, ``U`` undo the last commit, ``T`` toggle the point label. On a volume
``S`` segments the slice on screen and ``C`` commits the 3D object (propagation:
:mod:`.segment_volume`).
"""

from __future__ import annotations

from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, Container, PushButton
from napari.utils.notifications import show_info

from napari_sam_peft._qt import prompt_layers
from napari_sam_peft._qt.dock_layout import on_click, show_text
from napari_sam_peft._qt.segment_commits import CommitsPanel
from napari_sam_peft._qt.segment_image import ImagePanel
from napari_sam_peft._qt.user_errors import user_errors
from napari_sam_peft.core.annotation.commits import PROMPTED
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.session import Annotator, AnnotatorSession

CURRENT = "current_object"


class PromptPanel:
    """Segments the prompted object(s) into ``current_object`` and commits them."""

    def __init__(
        self, viewer: napari.Viewer, session: AnnotatorSession, image: ImagePanel, commits: CommitsPanel
    ) -> None:
        self.viewer = viewer
        self.session = session
        self.image = image
        self.commits = commits
        self._pending: list[ObjectPrompts] = []  # the prompts that made current_object's objects
        self.batch_mode = CheckBox(
            text="batch mode", value=False, tooltip="One object per box and per positive point"
        )
        self.segment_button = PushButton(text="Segment [S]")
        self.commit_button = PushButton(text="Commit [C]")
        self.clear_button = PushButton(text="Clear [Shift+C]", tooltip="Clear the prompts and the current object")
        self.undo_button = PushButton(text="Undo [U]", tooltip="Undo the last commit on this image")
        self.rows = [
            Container(widgets=[self.segment_button, self.commit_button], layout="horizontal", labels=False),
            Container(widgets=[self.clear_button, self.undo_button], layout="horizontal", labels=False),
        ]
        self.point_layer, self.box_layer = prompt_layers.create_prompt_layers(viewer)
        on_click(self.segment_button, self.segment)
        on_click(self.commit_button, self.commit)
        on_click(self.clear_button, self.clear)
        on_click(self.undo_button, self.commits.undo)

    @property
    def widgets(self) -> list[Any]:
        """The panel's widgets, top to bottom."""
        return [self.batch_mode, *self.rows]

    def show(self, annotator: Annotator) -> None:
        """Prepare ``current_object``, the prompt layers (3D for a volume) and the point size for a newly
        shown image or volume."""
        shape = annotator.labels_shape
        self.point_layer, self.box_layer = prompt_layers.create_prompt_layers(self.viewer, len(shape))
        prompt_layers.labels_layer(self.viewer, CURRENT, shape).data = np.zeros(shape, dtype=np.uint32)
        # napari keeps the selection of points a commit removed, and setting the size of "selected"
        # points that no longer exist raises: the point just clicked, S, C, then N crashed here
        self.point_layer.selected_data = set()
        self.point_layer.current_size = prompt_layers.point_size_for(shape[-2:])

    def current_prompts(self) -> list[ObjectPrompts]:
        """The prompts on the layers for the slice on screen, one entry per object (see
        :func:`prompt_layers.read_prompts`)."""
        annotator = self.session.shown
        z = annotator.slice_of(self.image.current_slice) if annotator is not None else None
        batch = self.batch_mode.value and not (annotator is not None and annotator.one_object_at_a_time)
        return prompt_layers.read_prompts(self.point_layer, self.box_layer, batch, z=z)

    def segment(self) -> None:
        """Segment the current object(s) from the prompts into ``current_object`` (a volume: on the slice
        on screen, leaving the other slices as they are)."""
        z = self.image.current_slice
        with user_errors() as outcome:
            annotator = self.image.require()
            objects = self.current_prompts()
            masks = annotator.segment(objects, z)
        if outcome.failed:
            return
        layer = self.viewer.layers[CURRENT]
        plane = annotator.plane(z)
        result = np.zeros(layer.data[plane].shape, dtype=np.uint32)
        for index, mask in enumerate(masks, start=1):
            result[mask] = index
        layer.data[plane] = result
        # the prompts of the other slices of a volume keep the objects they made
        slice_ = annotator.slice_of(z)
        self._pending = [p for p in self._pending if p.slice != slice_] + objects
        layer.refresh()
        self._say_if_empty([bool(mask.any()) for mask in masks])

    def _say_if_empty(self, found: list[bool]) -> None:
        """Say when a prompt gave no mask (the canvas shows nothing, so the user would not know why)."""
        empty = found.count(False)
        if empty:
            which = "The prompt" if len(found) == 1 else f"{empty} of {len(found)} prompts"
            message = (
                f"{which} gave no mask: add a positive point inside the object, or draw a box around it, "
                "then press S again."
            )
            show_info(message)
            show_text(self.image.embedding_status, message)

    def set_current(self, mask: np.ndarray, prompts: list[ObjectPrompts]) -> None:
        """Show ``mask`` (a propagated 3D object) as ``current_object``, made by ``prompts``."""
        layer = self.viewer.layers[CURRENT]
        layer.data = mask.astype(np.uint32)
        self._pending = prompts
        layer.refresh()

    def commit(self) -> None:
        """Commit ``current_object`` into ``committed_objects`` under new ids, and clear the prompts."""
        if CURRENT not in self.viewer.layers or not self.viewer.layers[CURRENT].data.any():
            show_info("Nothing to commit: segment an object first (S).")
            return
        self.commits.commit(self.viewer.layers[CURRENT].data, self._pending, PROMPTED)
        self.clear()

    def clear(self) -> None:
        """Clear the prompts and the current object."""
        # napari keeps the selection of removed points; its setters that apply to the selection
        # (current_properties, current_size) then index points that are gone and raise
        self.point_layer.selected_data = set()
        self.point_layer.data = np.zeros((0, self.point_layer.ndim))
        self.box_layer.data = []
        if CURRENT in self.viewer.layers:
            layer = self.viewer.layers[CURRENT]
            layer.data = np.zeros_like(layer.data)
        self._pending = []

    def toggle_point_label(self) -> None:
        """Switch the label of the next point between positive and negative."""
        prompt_layers.toggle_point_label(self.point_layer)
