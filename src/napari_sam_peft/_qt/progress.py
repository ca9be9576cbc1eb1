"""A napari progress bar that worker threads can update safely.

Qt objects must be touched from the main thread only. A :class:`ProgressRelay` is made on
the main thread; its ``report(done, total)`` may be called from any thread and is relayed
to the napari progress bar through a queued Qt signal. It is the widgets' end of the one
progress path: the session and core take ``progress(done, total)`` callbacks, and micro_sam's
own callbacks are adapted to that in :mod:`napari_sam_peft.core.annotation.progress`.
"""

from __future__ import annotations

from napari.utils import progress
from qtpy.QtCore import QObject, Signal


class ProgressRelay(QObject):
    """Owns one napari progress bar; ``report`` is thread-safe."""

    _reported = Signal(int, int)

    def __init__(self, description: str) -> None:
        super().__init__()
        self.bar: progress | None = progress(total=0, desc=description)  # total 0: indeterminate until told
        self._reported.connect(self._update)

    def report(self, done: int, total: int) -> None:
        """Show ``done`` of ``total`` steps (from any thread)."""
        self._reported.emit(int(done), int(total))

    def _update(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        """Close the bar; later reports are ignored."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
