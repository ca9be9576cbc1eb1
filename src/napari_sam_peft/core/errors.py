"""Exceptions a user can cause. Each message says what to do next.

The GUI shows these as napari notifications; the command line prints the message on
one line and exits with status 2.
"""


class SamPeftError(Exception):
    """Base class of every error a user can cause and fix."""


class ModelNotAvailableError(SamPeftError):
    """The requested model's weights are not on this computer and cannot be downloaded."""


class InvalidCheckpointError(SamPeftError):
    """A weights file that is missing, unreadable, unsafe or not a SAM checkpoint."""


class DeviceNotAvailableError(SamPeftError):
    """The requested compute device (cuda, mps) is not available."""


class ClusterError(SamPeftError):
    """A Dask cluster that cannot be reached, has no suitable worker, or lost a run; says what to do."""
