"""A napari progress bar that worker threads can update safely.

Qt objects must be touched from the main thread only. A :class:`ProgressRelay` is made on
the main thread; its ``report(done, total)`` may be called from any thread and is relayed
to the napari progress bar through a queued Qt signal.
"""

from __future__ import annotations

import weakref

from napari.utils import progress
from qtpy.QtCore import QObject, Signal


class ProgressRelay(QObject):
    """Owns one napari progress bar; ``report`` is thread-safe."""

    _reported = Signal(int, int)
    _open: weakref.WeakSet[ProgressRelay] = weakref.WeakSet()

    def __init__(self, description: str) -> None:
        super().__init__()
        self.bar = progress(total=0, desc=description)  # total 0: indeterminate until told
        self._reported.connect(self._update)
        ProgressRelay._open.add(self)

    def report(self, done: int, total: int) -> None:
        self._reported.emit(int(done), int(total))

    def _update(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        ProgressRelay._open.discard(self)

    @classmethod
    def close_all(cls) -> None:
        """Close every open bar (after a worker failed)."""
        for relay in list(cls._open):
            relay.close()
