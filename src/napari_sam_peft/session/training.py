"""The session's training: one run at a time in a worker process, its events, and the hot reload.

A run is ``napari-sam-peft train`` in its own process (:class:`~napari_sam_peft.core.training.worker.
TrainingProcess`), on this machine or, for a job that names one, on a Dask cluster: a crash or an
out-of-memory error there never takes the caller down. :meth:`TrainingRuns.pump` drains the run's
events, emits each one, hands each new best adapter to the model's hot reload (the model attaches it
as soon as it is read and free) and says when the run has ended. A widget calls ``pump`` from a timer;
a script or a test calls :meth:`TrainingRuns.wait`, which pumps until the end. The loop a user runs in
napari (annotate, train, hot reload, annotate) runs the same from a script.
"""

from __future__ import annotations

import time
from pathlib import Path

from psygnal import Signal

from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.training.events import Best, Event
from napari_sam_peft.core.training.job import TrainingJob
from napari_sam_peft.core.training.plan import check_training_data
from napari_sam_peft.core.training.worker import TrainingProcess

from .committed_objects import CommittedObjects
from .live_model import LiveModel

#: how often :meth:`TrainingRuns.wait` pumps
PUMP_SECONDS = 0.1


class TrainingRuns:
    """Starts runs on the session's store and model, follows them, and hot-reloads their adapters.

    Signals
    -------
    started(TrainingProcess)
        A run started.
    event(Event)
        One event of the run (see :mod:`napari_sam_peft.core.training.events`), in order.
    ended(Event)
        The run's last event (``finished`` or ``error``), once its last adapter is live (or refused).

    Attributes
    ----------
    live_reload
        Whether each new best adapter is attached to the model at once (the Finetune widget's "Live
        reload into Segment"); without it the adapter is only remembered (see
        :meth:`~napari_sam_peft.session.live_model.LiveModel.reload_adapter`).
    """

    started = Signal(object)
    event = Signal(object)
    ended = Signal(object)

    def __init__(self, model: LiveModel, annotations: CommittedObjects) -> None:
        self.model = model
        self.annotations = annotations
        self.live_reload = True
        self.process: TrainingProcess | None = None
        self._ended = False

    @property
    def running(self) -> bool:
        """Whether a run has started and not yet ended (its hot reloads included)."""
        return self.process is not None and not self._ended

    def start(self, job: TrainingJob, env: dict[str, str] | None = None) -> TrainingProcess:
        """Start ``job`` in a worker process (hand corrections painted a moment ago are recorded first).

        Raises
        ------
        SamPeftError
            A run is going on, or the store holds no training objects (the message says what to do).
        """
        if self.running:
            raise SamPeftError("A training run is already going: stop it first.")
        self.annotations.record_edited()  # corrections painted a moment ago are training data too
        store = self.annotations.store
        info = store.info() if store is not None else None
        check_training_data(info)
        if self.process is not None:
            self.process.close()
        self._ended = False
        self.process = TrainingProcess(job, env=env).start()
        self.started.emit(self.process)
        return self.process

    def pump(self) -> list[Event]:
        """Handle the run's new events: emit them, reload each new best adapter, end the run once.

        Returns the events handled. Call it often (the widget: every 100 ms); it never blocks.

        Raises
        ------
        SamPeftError, OSError
            A new adapter could not be read or does not fit; the current adapter stays, the run goes on.
        """
        process = self.process
        if process is None:
            return []
        events = process.poll()
        for event in events:
            if isinstance(event, Best) and self.model.loaded is not None:
                self.model.reload_adapter(Path(event.path), attach=self.live_reload)
            self.event.emit(event)
        if self.model.reload_pending is not None:
            self.model.finish_reload()  # "reading" or "busy": again on the next pump
        if process.terminal_event is not None and self.model.reload_pending is None and not self._ended:
            self._ended = True
            self.ended.emit(process.terminal_event)
        if self._ended and not process.running:
            process.close()  # its stop-file folder now, not at Python's exit
        return events

    def wait(self, timeout: float | None = None) -> Event:
        """Pump until the run has ended (its last adapter live); returns its last event.

        Raises
        ------
        SamPeftError
            No run was started.
        TimeoutError
            After ``timeout`` seconds (the run goes on).
        """
        if self.process is None:
            raise SamPeftError("No training run was started.")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ended:
            self.pump()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"The training run did not end within {timeout:.0f} s.")
            time.sleep(PUMP_SECONDS)
        assert self.process.terminal_event is not None
        return self.process.terminal_event

    def stop(self) -> None:
        """Ask the run to end after its current step (the best adapter is kept)."""
        if self.process is not None and self.process.running:
            self.process.stop()

    def close(self, grace: float = 0.0) -> None:
        """End the worker (given ``grace`` seconds to stop cleanly first)."""
        if self.process is not None:
            self.process.close(grace=grace)
