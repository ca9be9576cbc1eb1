"""The "Finetune" dock widget: train an adapter in the background and use it at once.

Three panels, one file each: :class:`SettingsPanel` (what to train: the fields of the training
job's schema, the recommendation and the estimate), :class:`RunPanel` (start, stop, status,
curves, hot reload, base vs adapter, evaluation) and :class:`HistoryPanel` (the store's runs).
This widget only puts them together and connects their signals.
"""

from __future__ import annotations

import napari

from napari_sam_peft._qt.dock_layout import fit_to_dock
from napari_sam_peft._qt.finetune_history import HistoryPanel
from napari_sam_peft._qt.finetune_run import RunPanel
from napari_sam_peft._qt.finetune_settings import SettingsPanel
from napari_sam_peft._qt.viewer_session import SessionDock
from napari_sam_peft.core.training.job import TrainingJob
from napari_sam_peft.core.training.worker import TrainingProcess


class FinetuneWidget(SessionDock):
    """Dock widget: choose a PEFT preset, train it on the store in a worker process, hot-reload."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer, labels=False)
        self.settings = SettingsPanel(self.session)
        self.run = RunPanel(napari_viewer, self.session, self.settings)
        self.runs = HistoryPanel(self.session)
        self.extend([self.settings, self.run, self.runs])
        # the curves come last, below the runs table, as the widget has always shown them
        self.native.layout().addWidget(self.run.loss_plot)
        self.native.layout().addWidget(self.run.val_plot)
        self.run.runs_changed.connect(self.runs.refresh)

        # each panel's fields, here too (scripts and tests reach them as finetune.steps and so on)
        settings, fields = self.settings, self.settings.fields
        self.data_status = settings.data_status
        self.recommendation = settings.recommendation
        self.preset = fields["preset"]
        self.blocks = fields["blocks"]
        self.rank = fields["rank"]
        self.lr = fields["lr"]
        self.steps = fields["steps"]
        self.recipe = fields["recipe"]
        self.corrections = fields["sub_iterations"]
        self.objects = fields["objects_per_image"]
        self.validate_every = fields["validate_every"]
        self.device = fields["device"]
        self.precision = fields["precision"]
        self.hot_reload = settings.hot_reload
        self.evaluate = fields["evaluate"]
        self.with_decoder = fields["with_decoder"]
        self.estimate = settings.estimate
        self.start_button = self.run.start_button
        self.stop_button = self.run.stop_button
        self.status = self.run.status
        self.loss_plot = self.run.loss_plot
        self.val_plot = self.run.val_plot
        self.compare = self.run.compare
        self.evaluated_on = self.run.evaluated_on
        self.evaluation_table = self.run.evaluation_table
        self._timer = self.run._timer
        self.history = self.runs.history
        self.load_run_button = self.runs.load_run_button
        fit_to_dock(self, "Finetune")

    @property
    def process(self) -> TrainingProcess | None:
        """The worker of the current (or last) run."""
        return self.run.process

    def job(self) -> TrainingJob:
        """The run the current settings describe (raises SamPeftError for what is missing)."""
        return self.settings.job()

    def start(self, *, env: dict[str, str] | None = None) -> TrainingProcess | None:
        """Start a run with the current settings (the "Start training" button); ``env`` is for tests."""
        return self.run.start(env=env)

    def stop(self) -> None:
        """Ask the run to stop after its current step."""
        self.run.stop()

    @property
    def reloads(self) -> int:
        """How many new best adapters were attached live during runs."""
        return self.session.model.reloads
