"""One way to show an error a user caused: a napari notification with a message, never a traceback.

Every slot that can fail on user input runs its work inside :func:`user_errors`::

    with user_errors() as outcome:
        self.session.annotations.commit()
    if outcome.failed:
        return

Only the errors a user can cause (:class:`SamPeftError`, and file-system errors such as a
missing or unwritable file) become notifications; anything else is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from napari.utils.notifications import show_error

from ..core.errors import SamPeftError

#: the exceptions a user's input or files can cause
USER_ERRORS: tuple[type[BaseException], ...] = (SamPeftError, OSError)


@dataclass
class Outcome:
    """Whether the work inside :func:`user_errors` failed, and with which error."""

    error: BaseException | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


def notify_error(error: BaseException, context: str = "") -> None:
    """Show ``error`` as a napari error notification, prefixed by ``context`` (what was being done)."""
    message = str(error).strip() or type(error).__name__
    show_error(f"{context}{message}")


def notify_worker_error(error: BaseException) -> None:
    """Show an error raised on a worker thread: a user's error by its message, anything else as unexpected."""
    if isinstance(error, SamPeftError):
        notify_error(error)
        return
    message = str(error).strip() or "no message"
    show_error(f"Unexpected error: {type(error).__name__}: {message}")


@contextmanager
def user_errors(context: str = "", catch: tuple[type[BaseException], ...] = USER_ERRORS) -> Iterator[Outcome]:
    """Run a block; an error of the ``catch`` types becomes a notification and ``outcome.failed``."""
    outcome = Outcome()
    try:
        yield outcome
    except catch as error:
        outcome.error = error
        notify_error(error, context)
