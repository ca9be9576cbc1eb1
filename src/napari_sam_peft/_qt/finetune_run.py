"""The Finetune widget's run panel: start and stop a run, follow it, use its adapter at once.

The run itself is the session's (:class:`~napari_sam_peft.session.training.TrainingRuns`: a worker
process, its events, the hot reload of each new best adapter). This panel starts and stops it and
shows it: a Qt timer pumps the session's run on the main thread, and the panel draws each event (the
status line, the loss and validation curves, the evaluation table). The Segment widget re-embeds the
shown image after each reload, running only the adapted encoder blocks, and the next prompt uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import napari
from magicgui.widgets import ComboBox, Container, Label, PushButton, Table
from napari.utils.notifications import show_error, show_info, show_warning
from psygnal import Signal
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from napari_sam_peft._qt.curve_plot import CurvePlot
from napari_sam_peft._qt.dock_layout import full_width, on_click, show_text, wrapping
from napari_sam_peft._qt.finetune_settings import SettingsPanel
from napari_sam_peft._qt.run_messages import ONLY_TRAINING_DATA, event_path, status_line
from napari_sam_peft._qt.run_tables import evaluation_rows, set_rows, style_table
from napari_sam_peft._qt.user_errors import user_errors
from napari_sam_peft.core.evaluation.report import EvaluationReport
from napari_sam_peft.core.training.events import Error, Evaluation, Event, Finished, Progress, Started
from napari_sam_peft.core.training.holdout import TRAINING_DATA
from napari_sam_peft.core.training.worker import TrainingProcess
from napari_sam_peft.session import AnnotatorSession
from napari_sam_peft.session.training import TrainingRuns

POLL_MS = 100
ADAPTER, BASE_MODEL = "adapter", "base model"


#: seconds napari's quit waits for a running worker to finish its step and write its adapter
QUIT_GRACE_S = 10.0


class _QuitGuard:
    """Ends the session's run at the two ends that outlive the panel's widgets, holding the run and not
    the panel.

    The Finetune dock closed: the run is asked to stop after its step (it keeps its best adapter).
    napari quit (``aboutToQuit``, before Python's clean-up removes temporary folders and Qt deletes
    widgets): the worker is given :data:`QUIT_GRACE_S` to stop, then killed, so no training process
    outlives napari.
    """

    def __init__(self, training: TrainingRuns) -> None:
        self.training = training
        self._on_quit = lambda: self.training.close(grace=QUIT_GRACE_S)  # Qt holds a lambda strongly

    def end_with(self, app: Any) -> None:
        """End the worker when ``app`` (the QApplication) quits."""
        app.aboutToQuit.connect(self._on_quit)

    def stop_on_close(self, *_: Any) -> None:
        self.training.stop()


class RunPanel(Container):
    """Start/Stop, the status line and curves, base vs adapter, and the run's evaluation.

    Signals
    -------
    runs_changed()
        A run started or ended: the store's list of runs changed.
    """

    runs_changed = Signal()

    def __init__(self, viewer: napari.Viewer, session: AnnotatorSession, settings: SettingsPanel) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.session = session
        self.settings = settings
        self.training = session.training
        self._guard = _QuitGuard(session.training)
        self.last_evaluation: EvaluationReport | None = None
        self.start_button = PushButton(text="Start training")
        self.stop_button = PushButton(
            text="Stop", enabled=False, tooltip="Stop after this step; the best adapter is kept"
        )
        self.status = wrapping(Label(value="Not training."))
        self.loss_plot = CurvePlot("training loss", "#FFB74D")
        self.val_plot = CurvePlot("validation box IoU", "#81C784")
        self.compare = ComboBox(label="segment with", choices=[ADAPTER, BASE_MODEL], value=ADAPTER)
        self.evaluated_on = wrapping(Label(value=""))
        self.evaluation_table = style_table(Table(value=evaluation_rows(None)), stretch=True)
        buttons = Container(widgets=[self.start_button, self.stop_button], layout="horizontal", labels=False)
        heading = Label(value="Evaluation (mSA)")
        self.extend([buttons, self.status, self.compare, heading, self.evaluated_on, self.evaluation_table])
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            Started: self._on_started,
            Progress: self._on_progress,
            Evaluation: self.show_evaluation,
            Finished: self._on_finished,
            Error: self._on_error,
        }
        self._timer = QTimer(self.native)  # dies with the panel: no polling into deleted labels
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)
        self._guard.end_with(QApplication.instance())
        guard, training = self._guard, session.training
        self.native.destroyed.connect(lambda *_: guard.stop_on_close())  # not self: it is gone by then
        training.event.connect(self._on_event)
        training.ended.connect(self._on_ended)
        self.native.destroyed.connect(
            lambda *_: (training.event.disconnect(self._on_event), training.ended.disconnect(self._on_ended))
        )
        on_click(self.start_button, self.start)
        on_click(self.stop_button, self.stop)
        self.compare.changed.connect(self._compare_changed)
        model, follow = session.model, self._adapter_changed
        model.adapter_changed.connect(follow)
        model.base_changed.connect(follow)
        self.native.destroyed.connect(
            lambda *_: (model.adapter_changed.disconnect(follow), model.base_changed.disconnect(follow))
        )
        full_width(buttons, self.status, heading, self.evaluated_on, self.evaluation_table)

    @property
    def process(self) -> TrainingProcess | None:
        """The worker of the current (or last) run."""
        return self.training.process

    def start(self, *, env: dict[str, str] | None = None) -> TrainingProcess | None:
        """Start a run with the current settings (the "Start training" button); ``env`` is for tests."""
        from napari_sam_peft.core.training.estimate import first_trained_stage

        if self.training.running:
            show_warning("A training run is already going: stop it first.")
            return None
        with user_errors(status=self.status) as outcome:
            job = self.settings.job()
            spec = self.settings.spec()
            self.training.live_reload = bool(self.settings.hot_reload.value)
            self.training.start(job, env=env)
        if outcome.failed:
            return None
        # Keep the current image's block-k input, so every reload re-embeds only the adapted blocks.
        stage = first_trained_stage(spec, self.settings.architecture())
        self.session.embeddings.prepare_reloads(stage)
        self._keep_stage_input(stage)
        self.loss_plot.clear()
        self.val_plot.clear()
        set_rows(self.evaluation_table, evaluation_rows(None))
        self.evaluated_on.value = ""
        self.settings.hold_layout(True)  # Stop stays where the user aims while texts above it change
        where = "(loading the model in the training process)"
        if job.on_a_cluster:
            cluster = job.cluster or job.scheduler_file
            where = f"on the Dask cluster {cluster}: sending the store, loading the model there"
        self.status.value = f"Starting {job.preset} {where}..."
        self.start_button.enabled = False
        self.stop_button.enabled = True
        self._timer.start()
        return self.process

    def _keep_stage_input(self, stage: int) -> None:
        from napari.qt.threading import thread_worker

        shown = self.session.shown
        if shown is None or self.session.model.loaded is None:
            return

        @thread_worker(ignore_errors=True)  # the warning below says it; no traceback into Qt's event loop
        def work() -> None:
            shown.keep_stage_input(stage)

        worker = work()
        worker.errored.connect(lambda err: show_warning(f"Could not prepare fast reloads: {err}"))
        worker.start()

    def stop(self) -> None:
        """Ask the run to stop after its current step (the "Stop" button)."""
        if self.training.running:
            self.training.stop()
            self.status.value = "Stopping after the current step; the best adapter is kept..."

    def poll(self) -> None:
        """Pump the session's run (on the Qt thread, every 100 ms while it goes on): its events come back
        as :meth:`_on_event`, its end as :meth:`_on_ended`."""
        with user_errors("The new adapter could not be loaded: ", status=self.status):
            self.training.pump()
        if not self.training.running and (self.process is None or not self.process.running):
            self._timer.stop()

    def _on_event(self, event: Event) -> None:
        line = status_line(event)
        if line is not None:
            show_text(self.status, line, event_path(event))
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _on_ended(self, _event: Event) -> None:
        self.start_button.enabled = True
        self.stop_button.enabled = False
        self.settings.hold_layout(False)
        self.runs_changed.emit()

    def _on_started(self, event: Started) -> None:
        if event.validation == TRAINING_DATA:
            show_warning(ONLY_TRAINING_DATA)
        self.runs_changed.emit()

    def _on_progress(self, event: Progress) -> None:
        self.loss_plot.add_point(event.step, event.loss)
        if event.val_score is not None:
            self.val_plot.add_point(event.step, event.val_score)

    def show_evaluation(self, report: EvaluationReport) -> None:
        """Show base vs adapter in the evaluation table, and what it was measured on."""
        self.last_evaluation = report
        set_rows(self.evaluation_table, evaluation_rows(report))
        if report.measured_on:
            self.evaluated_on.value = f"Measured on {report.measured_on}."

    def _on_finished(self, event: Finished) -> None:
        message = f"Training {event.status.replace('_', ' ')}: the adapter is {event.path}"
        if self.session.model.base_only:  # the adapter waits: say where to switch, or it looks lost
            hint = " It is not in use: 'segment with' is on the base model; switch it to 'adapter' to use it."
            message += hint
            show_text(self.status, f"{self.status.value}{hint}", event.path)
        show_info(message)

    def _on_error(self, event: Error) -> None:
        show_error(event.message)  # the worker's message says what happened and what to do

    def _compare_changed(self, choice: str) -> None:
        with user_errors():
            self.session.model.use_base(choice == BASE_MODEL)

    def _adapter_changed(self, *_: object) -> None:
        """The switch shows what the model segments with (an adapter attached elsewhere turns it back)."""
        choice = BASE_MODEL if self.session.model.base_only else ADAPTER
        if self.compare.value != choice:
            self.compare.value = choice
