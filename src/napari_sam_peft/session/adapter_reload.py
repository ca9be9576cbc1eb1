"""Hot reloads: the newest adapter file a training run wrote, read on a thread, attached when the model is free.

A run writes a new best adapter every few hundred steps. :class:`HotReload` keeps the newest
one asked for; the file is read and verified on a daemon thread (with an instance decoder it
is about 40 MB: hashing it on the GUI thread stalled napari for a quarter of a second), and
:meth:`HotReload.finish` attaches it once it is read and the model is not busy on a worker
thread. Whoever drives the reload (the Finetune widget's timer, a script, a test) calls
``finish`` again until it answers ``"attached"`` or ``"idle"``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from napari_sam_peft.core.peft import Adapter

from .errors import SessionBusyError

#: where a hot reload stands: nothing asked, the file being read, the model busy, the adapter attached
ReloadState = Literal["idle", "reading", "busy", "attached"]


class AdapterFileRead:
    """An adapter file read and verified on a daemon thread (its identity hash computed there too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done = threading.Event()
        self._adapter: Adapter | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._read, name="adapter-read", daemon=True).start()

    def _read(self) -> None:
        try:
            adapter = Adapter.load(self.path)
            _ = adapter.identity  # cached on the adapter: the GUI thread never hashes the file
            self._adapter = adapter
        except BaseException as err:  # handed to the thread that attaches, which raises it
            self._error = err
        finally:
            self.done.set()

    def result(self) -> Adapter:
        """The adapter read (call once ``done`` is set); raises what reading raised."""
        if self._error is not None:
            raise self._error
        assert self._adapter is not None
        return self._adapter


class HotReload:
    """The newest adapter file asked for, and how many were attached.

    Parameters
    ----------
    attach
        Attaches an adapter read from a path, or raises :class:`SessionBusyError` at once
        when the model is busy.
    """

    def __init__(self, attach: Callable[[Adapter, Path], object]) -> None:
        self._attach = attach
        self._path: Path | None = None
        self._reading: AdapterFileRead | None = None
        self.attached = 0  # adapters attached by hot reloads

    @property
    def pending(self) -> Path | None:
        """The adapter file asked for and not attached yet, or None."""
        return self._path

    def request(self, path: Path) -> None:
        """Attach the adapter at ``path`` as soon as it is read and the model is free (the newest wins)."""
        self._path = path
        if self._reading is None or self._reading.path != path:
            self._reading = AdapterFileRead(path)

    def cancel(self) -> None:
        """Forget the request (the file may still be read; it is then dropped)."""
        self._path, self._reading = None, None

    def finish(self, timeout: float | None = 0.0) -> ReloadState:
        """Attach the adapter asked for if it is read (waiting up to ``timeout`` s for that; None: until
        it is) and the model is free.

        Returns
        -------
        ReloadState
            ``"attached"`` now, ``"idle"`` (nothing asked), or ``"reading"`` / ``"busy"``: call again later.

        Raises
        ------
        SamPeftError, OSError
            The file could not be read or does not fit the model; the request is dropped and the
            adapter attached before stays.
        """
        path, reading = self._path, self._reading
        if path is None or reading is None:
            return "idle"
        if not reading.done.wait(timeout):
            return "reading"
        try:
            self._attach(reading.result(), path)
        except SessionBusyError:
            return "busy"
        except BaseException:
            self.cancel()
            raise
        self.cancel()
        self.attached += 1
        return "attached"
