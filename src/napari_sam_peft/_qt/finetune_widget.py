"""The "Finetune" dock widget: train an adapter in the background and use it at once.

The run is ``napari-sam-peft train`` in a separate process (:class:`TrainingProcess`), so
napari stays responsive and survives a crash or an out-of-memory error in training. A Qt
timer drains the worker's events on the main thread: live loss and validation curves,
the status line, and each new best adapter, which is attached to the Segment widget's
model (unless "Load each new best adapter" is off). The Segment widget then re-embeds
the current image, running only the adapted encoder blocks, and the next prompt uses it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import napari
from magicgui.widgets import CheckBox, ComboBox, Container, Label, LineEdit, PushButton, SpinBox, Table
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer

from napari_sam_peft._qt.curve_plot import CurvePlot
from napari_sam_peft._qt.dock_layout import fit_to_dock, full_width, on_click, show_text, wrapping
from napari_sam_peft._qt.run_messages import ONLY_TRAINING_DATA, status_line
from napari_sam_peft._qt.run_tables import evaluation_rows, history_rows, set_rows, style_table
from napari_sam_peft._qt.sessions import session_for
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft import PRESETS, Adapter, spec_from_preset
from napari_sam_peft.core.peft.recommend import recommend_preset
from napari_sam_peft.core.sam.architecture import VIT_B
from napari_sam_peft.core.sam.devices import DEVICE_CHOICES, select_device
from napari_sam_peft.core.training.job import TrainingJob, list_runs, model_argument
from napari_sam_peft.core.training.worker import TrainingProcess
from napari_sam_peft.session import SessionBusyError

POLL_MS = 100


class _ProcessHolder:
    """Holds the running worker so it can be stopped when the widget is destroyed."""

    def __init__(self) -> None:
        self.process: TrainingProcess | None = None


def _stop_on_close(holder: _ProcessHolder, *_) -> None:
    if holder.process is not None and holder.process.running:
        holder.process.stop()  # the worker finishes its step and keeps its best adapter


class FinetuneWidget(Container):
    """Dock widget: choose a PEFT preset, train it on the store in a worker process, hot-reload."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self._runs: list[dict] = []
        self._holder = _ProcessHolder()
        self._pending_reload: Path | None = None
        self._last_adapter_path: Path | None = None
        self.reloads = 0  # adapters attached live during runs (tests and the status line use it)
        self.last_evaluation: dict | None = None

        self.data_status = wrapping(Label(value=""))
        self.recommendation = wrapping(Label(value=""))
        self.preset = ComboBox(label="preset", choices=list(PRESETS))
        self.blocks = LineEdit(label="blocks", value="")
        self.blocks.tooltip = "Encoder blocks to adapt: 'last 1', '6-11', 'late', 'all'; empty = preset default"
        self.rank = SpinBox(label="rank", value=0, min=0, max=256)
        self.rank.tooltip = "LoRA/FacT rank; 0 = the preset's default"
        self.lr = LineEdit(label="learning rate", value="1e-5")
        self.steps = SpinBox(label="steps", value=200, min=1, max=1_000_000)
        self.objects = SpinBox(label="objects / step", value=8, min=1, max=64)
        self.validate_every = SpinBox(label="validate every", value=25, min=1, max=100_000)
        self.validate_every.tooltip = "Steps between validations; each improvement writes and loads a new adapter"
        self.device = ComboBox(label="device", choices=list(DEVICE_CHOICES), value="auto")
        self.hot_reload = CheckBox(
            text="Live reload into Segment",
            value=True,
            tooltip="Attach each new best adapter to the Segment widget's model",
        )
        self.evaluate = CheckBox(
            text="Evaluate at the end",
            value=True,
            tooltip="Compare base model and adapter (mSA) when the run ends",
        )
        self.estimate = wrapping(Label(value=""))
        self.start_button = PushButton(text="Start training")
        self.stop_button = PushButton(
            text="Stop", enabled=False, tooltip="Stop after this step; the best adapter is kept"
        )
        self.status = wrapping(Label(value="Not training."))
        self.loss_plot = CurvePlot("training loss", "#FFB74D")
        self.val_plot = CurvePlot("validation box IoU", "#81C784")
        self.compare = ComboBox(label="segment with", choices=["adapter", "base model"], value="adapter")
        self.evaluated_on = wrapping(Label(value=""))
        self.evaluation_table = style_table(Table(value=evaluation_rows(None)), stretch=True)
        self.history = style_table(Table(value=history_rows([])))
        self.load_run_button = PushButton(
            text="Load selected run", tooltip="Attach the adapter of the run selected in the table"
        )
        self.extend(
            [
                self.data_status,
                self.recommendation,
                self.preset,
                self.blocks,
                self.rank,
                self.lr,
                self.steps,
                self.objects,
                self.validate_every,
                self.device,
                self.hot_reload,
                self.evaluate,
                self.estimate,
                Container(widgets=[self.start_button, self.stop_button], layout="horizontal", labels=False),
                self.status,
            ]
        )
        self.native.layout().addWidget(self.loss_plot)
        self.native.layout().addWidget(self.val_plot)
        self.extend([self.compare, Label(value="Evaluation (mSA)"), self.evaluated_on, self.evaluation_table])
        self.extend([Label(value="Runs"), self.history, self.load_run_button])

        self._timer = QTimer(self.native)  # dies with the widget: no polling into deleted labels
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)
        self.native.destroyed.connect(partial(_stop_on_close, self._holder))

        on_click(self.start_button, self.start)
        on_click(self.stop_button, self.stop)
        self.compare.changed.connect(self._compare_changed)
        on_click(self.load_run_button, self._load_selected_run)
        for field in (self.preset, self.blocks, self.rank, self.objects, self.steps):
            field.changed.connect(self._update_estimate)
        self.device.changed.connect(self._recommend)
        self.session.model_changed.connect(self._recommend)
        self.session.store_changed.connect(self._store_changed)
        self.session.store_updated.connect(self._update_data_status)
        self._recommend()
        self._store_changed(self.session.store)
        set_rows(self.history, history_rows(self._runs))
        full_width(
            self.data_status,
            self.recommendation,
            self.estimate,
            self.status,
            self.evaluated_on,
            self.evaluation_table,
            self.history,
            *[w for w in self if isinstance(w, Container | Label)],
        )
        fit_to_dock(self, "Finetune")

    # --------------------------------------------------------------- choosing
    @property
    def process(self) -> TrainingProcess | None:
        return self._holder.process

    def _architecture(self):
        return self.session.model.architecture if self.session.model is not None else VIT_B

    def _recommend(self, *_) -> None:
        try:
            device = select_device(self.device.value)
        except SamPeftError as err:
            self.recommendation.value = str(err)
            return
        pick = recommend_preset(device, self._architecture())
        self.preset.value = pick.preset
        self.blocks.value = pick.blocks or ""
        self.lr.value = f"{pick.lr:g}"
        self.recommendation.value = f"Recommended on {device.type}: {pick.preset}. {pick.reason}"
        self._update_estimate()

    def _spec(self):
        overrides = {"rank": self.rank.value} if self.rank.value else {}
        return spec_from_preset(
            self.preset.value, self._architecture().depth, blocks=self.blocks.value.strip() or None, **overrides
        )

    def _update_estimate(self, *_) -> None:
        from napari_sam_peft.core.training.estimate import estimate_training

        if self.session.model is None:  # the estimate depends on the model: none until one is loaded
            self.estimate.value = "Estimate: load a model in the Segment widget first."
            return
        try:
            device = select_device(self.device.value)
            estimate = estimate_training(self._spec(), self._architecture(), str(device), self.objects.value)
        except (SamPeftError, ValueError, TypeError) as err:
            self.estimate.value = f"Cannot train this: {err}"
            return
        self.estimate.value = f"Estimate: {estimate.describe(self.steps.value)}"

    # ------------------------------------------------------------------- data
    def _store_changed(self, store) -> None:
        self._update_data_status()
        self.refresh_history()

    def _update_data_status(self, *_) -> None:
        store = self.session.store
        if store is None:
            where = self.session.default_store_path
            show_text(
                self.data_status,
                "No training data yet: commit objects in the Segment widget"
                + (f" (they are recorded in {where})." if where else "."),
                str(where or ""),
            )
            return
        info = store.info()
        show_text(
            self.data_status,
            f"{info['train_objects']} training objects on {info['train_images']} images, "
            f"{info['val_objects']} validation objects, in {store.path}",
            str(store.path),
        )

    # -------------------------------------------------------------- training
    def job(self) -> TrainingJob:
        """The run the current settings describe (raises SamPeftError for what is missing)."""
        if self.session.store is None:
            raise SamPeftError(
                "There is no training data yet: commit objects in the Segment widget (S to segment, C to commit)."
            )
        model = self.session.require_model()
        try:
            lr = float(self.lr.value)
        except ValueError:
            raise SamPeftError(f"The learning rate must be a number like 1e-5, not {self.lr.value!r}.") from None
        if not lr > 0:
            raise SamPeftError("The learning rate must be positive (the paper's default is 1e-5).")
        spec = self._spec()  # validates preset, blocks and rank now, not in the worker
        return TrainingJob(
            store=self.session.store.path,
            model=model_argument(model),
            preset=self.preset.value,
            blocks=self.blocks.value.strip() or None,
            rank=self.rank.value or None,
            lr=lr,
            steps=self.steps.value,
            objects_per_image=self.objects.value,
            validate_every=self.validate_every.value,
            device=self.device.value,
            cache_dir=self.session.cache.root,
            evaluate=self.evaluate.value,
            extra={"spec": spec.to_json()},
        )

    def start(self, *, env: dict[str, str] | None = None) -> TrainingProcess | None:
        """Start a run with the current settings (the "Start training" button); ``env`` is for tests."""
        if self.process is not None and self.process.running:
            show_warning("A training run is already going: stop it first.")
            return None
        self.session.flush_requested.emit()  # corrections painted a moment ago are training data too
        try:
            job = self.job()
            if self.session.store.info()["train_objects"] == 0:
                raise SamPeftError(
                    "There are no training objects yet: commit objects in the Segment widget (S, then C); "
                    "objects in the validation split do not count."
                )
        except SamPeftError as err:
            show_error(str(err))
            return None
        from napari_sam_peft.core.training.estimate import first_trained_stage

        # Keep the current image's block-k input, so every reload re-embeds only the adapted blocks.
        stage = first_trained_stage(self._spec(), self._architecture())
        self.session.stage_hint = stage
        self._keep_stage_input(stage)
        self.loss_plot.clear()
        self.val_plot.clear()
        set_rows(self.evaluation_table, evaluation_rows(None))
        self.evaluated_on.value = ""
        self._holder.process = TrainingProcess(job, env=env).start()
        self.status.value = f"Starting {job.preset} (loading the model in the training process)..."
        self.start_button.enabled = False
        self.stop_button.enabled = True
        self._timer.start()
        return self.process

    def _keep_stage_input(self, stage: int) -> None:
        from napari.qt.threading import thread_worker

        layer = self.viewer.layers[self.session.current_image] if self.session.current_image else None
        if layer is None or self.session.model is None:
            return

        @thread_worker
        def work():
            self.session.keep_stage_input(layer.data, stage, layer.rgb)

        worker = work()
        worker.errored.connect(lambda err: show_warning(f"Could not prepare fast reloads: {err}"))
        worker.start()

    def stop(self) -> None:
        if self.process is not None and self.process.running:
            self.process.stop()
            self.status.value = "Stopping after the current step; the best adapter is kept..."

    def poll(self) -> None:
        """Handle the worker's new events (runs on the Qt thread, every 100 ms while training)."""
        process = self.process
        if process is None:
            return
        for event in process.poll():
            line = status_line(event)
            if line is not None:
                show_text(self.status, line, event.get("path"))
            handler = getattr(self, f"_on_{event.get('event')}", None)
            if handler is not None:
                handler(event)
        if self._pending_reload is not None:
            self._reload(self._pending_reload)
        if process.terminal_event is not None and self._pending_reload is None:
            self._timer.stop()
            self.start_button.enabled = True
            self.stop_button.enabled = False
            self.refresh_history()

    def _on_started(self, event: dict) -> None:
        if event.get("validation") == "training data":
            show_warning(ONLY_TRAINING_DATA)
        self.refresh_history()

    def _on_progress(self, event: dict) -> None:
        self.loss_plot.add_point(event["step"], event["loss"])
        if event["val_score"] is not None:
            self.val_plot.add_point(event["step"], event["val_score"])

    def _on_best(self, event: dict) -> None:
        self._last_adapter_path = Path(event["path"])
        if self.hot_reload.value and self.session.model is not None and self.compare.value == "adapter":
            self._pending_reload = self._last_adapter_path

    def _on_evaluation(self, event: dict) -> None:
        self.last_evaluation = event
        set_rows(self.evaluation_table, evaluation_rows(event))
        if event.get("measured_on"):
            self.evaluated_on.value = f"Measured on {event['measured_on']}."

    def _on_finished(self, event: dict) -> None:
        show_info(f"Training {event['status'].replace('_', ' ')}: the adapter is {event['path']}")

    def _on_error(self, event: dict) -> None:
        show_error(event["message"])

    # ------------------------------------------------------------- hot reload
    def _reload(self, path: Path) -> None:
        """Attach the adapter at ``path`` to the live model; retried next tick while the model is busy."""
        try:
            adapter = Adapter.load(path)
            self.session.set_adapter(adapter, path=path, wait=False)
        except SessionBusyError:
            return  # an embedding is being computed: try again on the next tick
        except SamPeftError as err:
            show_error(f"The new adapter could not be loaded: {err}")
        else:
            self.reloads += 1
        self._pending_reload = None

    def _compare_changed(self, choice: str) -> None:
        try:
            if choice == "base model":
                if self.session.adapter_path is not None:
                    self._last_adapter_path = self.session.adapter_path
                self.session.set_adapter(None)
            elif self._last_adapter_path is not None:
                self.session.set_adapter(self._last_adapter_path)
        except SamPeftError as err:
            show_error(str(err))

    # ---------------------------------------------------------------- history
    def refresh_history(self) -> None:
        self._runs = list_runs(self.session.store.path) if self.session.store is not None else []
        try:
            set_rows(self.history, history_rows(self._runs))
        except RuntimeError:  # the viewer is closing
            pass

    def _load_selected_run(self) -> None:
        rows = sorted({index.row() for index in self.history.native.selectedIndexes()})
        if not rows:
            show_error("Select a run in the table first.")
            return
        run = self._runs[rows[0]]
        path = Path(run["adapter"])
        if not path.exists():
            show_error(f"This run wrote no adapter ({run['status']}).")
            return
        try:
            self.session.set_adapter(path)
        except SamPeftError as err:
            show_error(str(err))
            return
        self._last_adapter_path = path
        self.compare.value = "adapter"
