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
from typing import Any

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


def notify_error(error: BaseException, context: str = "", status: Any = None) -> None:
    """Show ``error`` as a napari error notification, prefixed by ``context`` (what was being done); with a
    ``status`` label, the dock's status line keeps the message after the notification is gone."""
    message = f"{context}{str(error).strip() or type(error).__name__}"
    show_error(message)
    if status is not None:
        status.value = message
        status.native.setToolTip(message)


def worker_error_message(error: BaseException) -> str:
    """What to say of an error raised on a worker thread: a user's error by its message, anything else as
    unexpected."""
    if isinstance(error, SamPeftError):
        return str(error).strip() or type(error).__name__
    return f"Unexpected error: {type(error).__name__}: {str(error).strip() or 'no message'}"


def notify_worker_error(error: BaseException, status: Any = None) -> None:
    """Show an error raised on a worker thread as a notification (and in the ``status`` label, if given)."""
    message = worker_error_message(error)
    show_error(message)
    if status is not None:
        status.value = message
        status.native.setToolTip(message)


@contextmanager
def user_errors(
    context: str = "", catch: tuple[type[BaseException], ...] = USER_ERRORS, status: Any = None
) -> Iterator[Outcome]:
    """Run a block; an error of the ``catch`` types becomes a notification (kept in the ``status`` label, if
    given) and ``outcome.failed``."""
    outcome = Outcome()
    try:
        yield outcome
    except catch as error:
        outcome.error = error
        notify_error(error, context, status)
