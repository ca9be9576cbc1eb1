"""Slow work on napari's worker threads, each with a progress bar, results handed back on the Qt thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from napari.qt.threading import create_worker

from napari_sam_peft._qt.progress import ProgressRelay
from napari_sam_peft.core.annotation.progress import ProgressCallback

T = TypeVar("T")


class BackgroundJobs:
    """Starts work on worker threads; ``active`` holds the running ones (tests wait on it).

    Each job gets a napari progress bar through one :class:`ProgressRelay`, closed when the
    job returns or fails; a failure goes to ``on_error`` on the Qt thread.
    """

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self.active: set[Any] = set()
        self._on_error = on_error

    def run(self, description: str, work: Callable[[ProgressCallback], T], on_return: Callable[[T], None]) -> None:
        """Run ``work(report)`` on a worker thread, then ``on_return(result)`` on the Qt thread.

        Parameters
        ----------
        description
            The progress bar's text.
        work
            The slow part; it may call ``report(done, total)`` from its thread.
        on_return
            Takes the result; not called if the widget was closed meanwhile.
        """
        relay = ProgressRelay(description)

        def returned(result: T) -> None:
            relay.close()
            on_return(result)

        def errored(error: BaseException) -> None:
            relay.close()
            self._on_error(error)

        # errors go to on_error only: without _ignore_errors the worker would also re-raise them into Qt's
        # event loop, where napari shows a second notification with a traceback
        worker = create_worker(work, relay.report, _ignore_errors=True)
        worker.returned.connect(_unless_closed(returned))
        worker.errored.connect(_unless_closed(errored))
        self.active.add(worker)
        worker.finished.connect(lambda: self.active.discard(worker))
        worker.start()


def _unless_closed(callback: Callable[..., None]) -> Callable[..., None]:
    """Run a worker's callback unless the viewer closed the widget while the worker ran."""

    def guarded(*args: Any) -> None:
        try:
            callback(*args)
        except RuntimeError as err:
            if "has been deleted" not in str(err):
                raise

    return guarded
