"""The Qt-free library under the plugin.

Nothing in ``napari_sam_peft.core`` imports Qt or napari, so scripts, the command line
and cluster jobs can use it on machines without a display. A test enforces this.
"""

from .errors import (
    DeviceNotAvailableError,
    InvalidCheckpointError,
    ModelNotAvailableError,
    SamPeftError,
)
from .sam.architecture import SamArchitecture, build_sam
from .sam.devices import select_device
from .sam.loading import LoadedModel, ModelIdentity, load_model, save_model

__all__ = [
    "DeviceNotAvailableError",
    "InvalidCheckpointError",
    "LoadedModel",
    "ModelIdentity",
    "ModelNotAvailableError",
    "SamArchitecture",
    "SamPeftError",
    "build_sam",
    "load_model",
    "save_model",
    "select_device",
]
