"""Running slow work on napari's worker threads, with results handed back on the Qt thread."""

from __future__ import annotations

from collections.abc import Callable


def run_in_background(worker, on_return: Callable, on_error: Callable, active: set) -> None:
    """Start a napari ``thread_worker``; ``active`` holds it until it finishes (tests wait on it)."""
    worker.returned.connect(_unless_closed(on_return))
    worker.errored.connect(_unless_closed(on_error))
    active.add(worker)
    worker.finished.connect(lambda: active.discard(worker))
    worker.start()


def _unless_closed(callback: Callable) -> Callable:
    """Run a worker's callback unless the viewer closed the widget while the worker ran."""

    def guarded(*args):
        try:
            callback(*args)
        except RuntimeError as err:
            if "has been deleted" not in str(err):
                raise

    return guarded
