"""The "Segment" dock widget: prompt-based annotation with SAM, as micro_sam users know it.

Layers and keys follow micro_sam (see :mod:`.prompt_layers`): ``S`` segment, ``C`` commit,
``Shift+C`` clear prompts, ``U`` undo the last commit, ``T`` toggle the point label,
``N`` / ``Shift+N`` next / previous image; on a volume ``S`` segments the slice on screen and
``Shift+S`` propagates the object through z (:mod:`.segment_volume`).

Every commit, undo and hand correction of ``committed_objects`` (brush, eraser, fill) is
recorded in the session's annotation store, whichever other docks are open; the widget
shows where. An image the store already holds opens with its objects.

The widget is a thin container of panels, one module each: model (:mod:`.segment_model`),
image (:mod:`.segment_image`), prompts (:mod:`.segment_prompts`), automatic segmentation
(:mod:`.segment_automatic`), the next-image suggestion (:mod:`.segment_suggest`) and committed
objects (:mod:`.segment_commits`). Models, adapters,
embeddings, commits and the store live in the viewer's
:class:`~napari_sam_peft.session.AnnotatorSession`; slow work runs on worker threads with a
napari progress bar; every error a user can cause becomes a napari notification.
"""

from __future__ import annotations

from typing import Any

import napari
from magicgui.widgets import Container
from qtpy.QtCore import QTimer

from napari_sam_peft._qt import prompt_layers
from napari_sam_peft._qt.background import BackgroundJobs
from napari_sam_peft._qt.dock_layout import fit_to_dock, full_width
from napari_sam_peft._qt.segment_automatic import AutomaticPanel
from napari_sam_peft._qt.segment_commits import CommitsPanel
from napari_sam_peft._qt.segment_image import ImagePanel
from napari_sam_peft._qt.segment_model import ModelPanel
from napari_sam_peft._qt.segment_prompts import PromptPanel
from napari_sam_peft._qt.segment_suggest import SuggestPanel
from napari_sam_peft._qt.segment_volume import VolumePanel
from napari_sam_peft._qt.user_errors import notify_worker_error, worker_error_message
from napari_sam_peft._qt.viewer_session import SessionDock

#: the panels' widgets and layers under the names scripts and tests have always used: name -> (panel, attribute)
WIDGET_NAMES = {
    **{name: ("model_panel", name) for name in ("model_choice", "load_button", "adapter_file", "attach_button")},
    **{name: ("image_panel", name) for name in ("image_choice", "previous_button", "next_button", "folder")},
    **{name: ("prompt_panel", name) for name in ("batch_mode", "segment_button", "commit_button", "clear_button")},
    "undo_button": ("prompt_panel", "undo_button"),
    "propagate_button": ("volume_panel", "propagate_button"),
    "stop_propagation_button": ("volume_panel", "stop_button"),
    "detach_button": ("model_panel", "detach_button"),
    "model_status": ("model_panel", "status"),
    "embedding_status": ("image_panel", "embedding_status"),
    "auto_button": ("automatic_panel", "run_button"),
    "commit_auto_button": ("automatic_panel", "commit_button"),
    "presegment_box": ("automatic_panel", "presegment"),
    "suggest_button": ("suggest_panel", "button"),
    "suggest_status": ("suggest_panel", "status"),
    "store_status": ("commits_panel", "store_status"),
}


class SegmentWidget(SessionDock):
    """Dock widget: pick model, adapter and image; segment with prompts; commit objects."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self.jobs = BackgroundJobs(self._worker_failed)
        self._new_images: list[str] = []  # images added since the event loop last ran
        self._shown_before_new: str | None = None  # the image shown when the first of them was added
        self.model_panel = ModelPanel(self.session, self.jobs)
        self.image_panel = ImagePanel(napari_viewer, self.session, self.jobs)
        self.commits_panel = CommitsPanel(napari_viewer, self.session)
        self.prompt_panel = PromptPanel(napari_viewer, self.session, self.image_panel, self.commits_panel)
        self.automatic_panel = AutomaticPanel(
            napari_viewer, self.session, self.jobs, self.image_panel, self.commits_panel
        )
        self.suggest_panel = SuggestPanel(napari_viewer, self.session, self.jobs, self.image_panel)
        self.volume_panel = VolumePanel(
            napari_viewer, self.session, self.jobs, self.image_panel, self.prompt_panel
        )
        self.extend(self._panel_widgets())
        self._name_widgets()
        self._connect()
        prompts, images = self.prompt_panel, self.image_panel
        self.keys = prompt_layers.KeyBindings(
            napari_viewer,
            {
                "s": prompts.segment,
                "Shift-S": self.volume_panel.propagate,
                "c": prompts.commit,
                "Shift-C": prompts.clear,
                "u": self.commits_panel.undo,
                "t": prompts.toggle_point_label,
                "n": lambda: images.step(+1),
                "Shift-N": lambda: images.step(-1),
            },
        )
        if images.image_choice.value is not None:
            images.select(images.image_choice.value)
        self.model_panel.update_status()
        self.commits_panel.update_status()
        rows = [w for w in self if isinstance(w, Container)]
        statuses = (
            self.model_panel.status,
            images.embedding_status,
            self.suggest_panel.status,
            self.volume_panel.status,
        )
        full_width(*statuses, self.commits_panel.store_status, *rows)
        fit_to_dock(self, "Segment")

    def _panel_widgets(self) -> list[Any]:
        """The panels' widgets top to bottom; "Suggest" joins Previous / Next, "pre-segment" joins
        "batch mode", so the dock still fits a 1280 x 800 screen."""
        self.image_panel.series_row.append(self.suggest_panel.button)
        options = Container(
            widgets=[self.prompt_panel.batch_mode, self.automatic_panel.presegment],
            layout="horizontal",
            labels=False,
        )
        prompts = [w for w in self.prompt_panel.widgets if w is not self.prompt_panel.batch_mode]
        automatic = [w for w in self.automatic_panel.widgets if w is not self.automatic_panel.presegment]
        return [
            *self.model_panel.widgets,
            *self.image_panel.widgets,
            options,
            *prompts,
            *self.volume_panel.widgets,
            *automatic,
            self.suggest_panel.status,
            *self.commits_panel.widgets,
        ]

    def _name_widgets(self) -> None:
        """Reach the panels' widgets and layers by the names scripts and tests have always used."""
        for name, (panel, attribute) in WIDGET_NAMES.items():
            setattr(self, name, getattr(getattr(self, panel), attribute))

    @property
    def point_layer(self) -> Any:
        """The ``point_prompts`` layer (2D, or 3D while a volume is shown)."""
        return self.prompt_panel.point_layer

    @property
    def box_layer(self) -> Any:
        """The ``prompts`` (boxes) layer (2D, or 3D while a volume is shown)."""
        return self.prompt_panel.box_layer

    @property
    def embeddings(self) -> dict | None:
        """The shown image's embeddings (None while they are computed)."""
        return self.image_panel.embeddings

    @property
    def embedding_key(self) -> Any:
        """The key of the shown image's embeddings."""
        return self.image_panel.embedding_key

    @property
    def active_workers(self) -> set[Any]:
        """Background jobs still running (tests wait for them)."""
        return self.jobs.active

    def _connect(self) -> None:
        self._fit_view = False  # see _layer_inserted
        self.viewer.layers.events.inserted.connect(self._layer_inserted)
        self.viewer.layers.events.removed.connect(self._refresh_image_choices)
        for signal, slot in self._session_slots():
            signal.connect(slot)

    def _session_slots(self) -> list[tuple[Any, Any]]:
        """What the panels draw when the session shows another image or volume."""
        shown = self.session
        return [
            (shown.leaving, self.commits_panel.leave),
            (shown.leaving, self.prompt_panel.clear),
            (shown.leaving, self.automatic_panel.leave),
            (shown.opened, self.commits_panel.show),
            (shown.opened, self.prompt_panel.show),
            (shown.opened, self.volume_panel.show_for),
            (shown.model.base_changed, self.volume_panel.follow_model),
        ]

    def _layer_inserted(self, event: Any) -> None:
        """A layer was added, however (File > Open, Open Sample, a script): list it, keep the annotator's
        layers above it, and show a new image (the first of several opened at once)."""
        self._refresh_image_choices()
        layer = event.value
        if layer.name in prompt_layers.ANNOTATOR_LAYERS:
            return
        if isinstance(layer, napari.layers.Image):
            if not self._new_images:
                self._shown_before_new = self.image_panel.name
            self._new_images.append(layer.name)
        # The first image opened after the dock: napari fits the view to the first layer only, and the
        # dock's empty prompt layers came first (the view would show napari's empty 512 x 512 world).
        others = [o for o in self.viewer.layers if o is not layer and o.name not in prompt_layers.ANNOTATOR_LAYERS]
        self._fit_view = self._fit_view or not others
        # after napari has finished adding it (moving layers inside its own insert event is not safe)
        QTimer.singleShot(0, self._after_layers_added)

    def _after_layers_added(self) -> None:
        try:
            if self._fit_view:
                self._fit_view = False
                self.viewer.reset_view()
            prompt_layers.raise_annotator_layers(self.viewer)
            new, self._new_images = [n for n in self._new_images if n in self.viewer.layers], []
            # unless an image was chosen meanwhile (a folder opened as a series shows its first)
            if new and self.image_panel.name == self._shown_before_new:
                self.image_panel.image_choice.value = new[0]
        except RuntimeError:  # the viewer closed meanwhile
            pass

    def _refresh_image_choices(self, *_: object) -> None:
        try:
            self.image_panel.refresh_choices()
        except RuntimeError:  # the viewer is closing and has already deleted this widget
            self._disconnect()

    def _disconnect(self) -> None:
        self.viewer.layers.events.inserted.disconnect(self._layer_inserted)
        self.viewer.layers.events.removed.disconnect(self._refresh_image_choices)
        self.keys.disconnect()
        for signal, slot in self._session_slots():
            signal.disconnect(slot)
        self.model_panel.disconnect()
        self.image_panel.disconnect()
        self.commits_panel.disconnect()

    def _worker_failed(self, error: BaseException) -> None:
        self.image_panel.show_failure(worker_error_message(error))
        self.volume_panel.failed()
        self.model_panel.update_status()
        notify_worker_error(error)
