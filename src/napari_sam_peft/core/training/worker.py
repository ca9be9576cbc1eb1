"""The training worker: ``napari-sam-peft train --events`` in a separate process.

A crash, an out-of-memory error or a kill in the worker can never take the caller down,
and the caller's event loop stays free: a reader thread turns the worker's JSON lines into
the typed events of :mod:`.events`, which the caller drains with :meth:`TrainingProcess.poll`
(the Finetune widget does so from a Qt timer). Stop asks the worker to finish its step and keep its best adapter;
kill ends it at once. Either way the adapter file is the last one written whole.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections import deque
from pathlib import Path

from .events import Error, Event, event_from_json
from .job import TrainingJob


class TrainingProcess:
    """One training run in a child process, with its events."""

    def __init__(self, job: TrainingJob, python: str = sys.executable, env: dict[str, str] | None = None) -> None:
        self._owns_run_dir = job.out is None  # a new run folder is made for this run: tidy it if unused
        self.job = job.with_run_folder()
        self.python = python
        self.env = env
        self.path = self.job.adapter_path
        self._events: queue.Queue[Event] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=40)
        self._process: subprocess.Popen | None = None
        self._readers: list[threading.Thread] = []
        self._stop_dir = tempfile.TemporaryDirectory(prefix="napari-sam-peft-stop-")
        self.stop_file = Path(self._stop_dir.name) / "stop"
        self.terminal_event: Event | None = None
        self._ended_reported = False

    @property
    def command(self) -> list[str]:
        """The worker's command line: ``python -m napari_sam_peft.cli train JOB... --events``."""
        argv = self.job.to_argv() + ["--events", "--stop-file", str(self.stop_file)]
        return [self.python, "-m", "napari_sam_peft.cli", "train", *argv]

    def start(self) -> TrainingProcess:
        """Start the worker and the threads that read its output; returns ``self``."""
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
        )
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True, name="training-events"),
            threading.Thread(target=self._read_stderr, daemon=True, name="training-stderr"),
        ]
        for reader in self._readers:
            reader.start()
        return self

    @property
    def pid(self) -> int | None:
        """The worker's process id (None before :meth:`start`)."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the worker has been started and has not ended."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The worker's exit status, None while it runs."""
        return self._process.poll() if self._process is not None else None

    def stop(self) -> None:
        """Ask the worker to stop after its current step; it writes its best adapter and exits.

        A no-op for a worker that has ended (or never started), whose stop-file folder may be gone.
        """
        if not self.running:
            return
        try:
            self.stop_file.touch()
        except FileNotFoundError:  # closed meanwhile: the worker was killed, nothing left to stop
            pass

    def kill(self) -> None:
        """End the worker now (the adapter file keeps the last best adapter written whole)."""
        if self._process is not None and self.running:
            self._process.kill()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the worker to end (and its output to be read); returns its exit status.

        Raises
        ------
        subprocess.TimeoutExpired
            If it is still running after ``timeout`` seconds.
        """
        assert self._process is not None, "start() first"
        code = self._process.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def poll(self) -> list[Event]:
        """Events that arrived since the last call; never blocks.

        If the process ended without a ``finished`` or ``error`` event (killed, or the
        interpreter died), one :class:`~.events.Error` event of kind ``crash`` says so.
        """
        events: list[Event] = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        for event in events:
            if event.terminal:
                self.terminal_event = event
                self._remove_unused_run_dir()
        readers_done = not any(reader.is_alive() for reader in self._readers[:1])
        if (
            self._process is not None
            and not self.running
            and readers_done
            and self._events.empty()
            and self.terminal_event is None
            and not self._ended_reported
        ):
            self._ended_reported = True
            event = Error("crash", self._crash_message())
            self._remove_unused_run_dir()
            self.terminal_event = event
            events.append(event)
        return events

    def _remove_unused_run_dir(self) -> None:
        """A run that failed before writing anything leaves no empty folder behind."""
        folder = self.path.parent
        if self._owns_run_dir and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()

    def _crash_message(self) -> str:
        code = self.returncode
        how = f"was killed (signal {-code})" if code is not None and code < 0 else f"ended with exit code {code}"
        detail = next((line for line in reversed(self._stderr) if line.strip()), "")
        detail = f" Its last message: {detail.strip()}" if detail else ""
        kept = (
            f" The last good adapter is intact: {self.path}."
            if self.path.exists()
            else " No adapter had been written yet."
        )
        return f"The training process {how}.{detail}{kept}"

    def _read_events(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            line = line.strip()
            event = event_from_json(line) if line.startswith("{") else None  # else: stray prints from libraries
            if event is not None:
                self._events.put(event)

    def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr.append(line.rstrip("\n"))

    def close(self, grace: float = 0.0) -> None:
        """End the worker and remove its stop-file folder; nothing of the run is left running.

        Parameters
        ----------
        grace
            Seconds to let a running worker stop by itself first (it finishes its step and writes
            its best adapter); after them, or with 0, it is killed. Its last best adapter, written
            whole, stays either way.
        """
        if grace > 0 and self.running:
            self.stop()
            try:
                self.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        if self._process is not None:
            self._process.wait()
        self._stop_dir.cleanup()
