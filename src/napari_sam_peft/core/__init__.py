"""The Qt-free library under the plugin.

Nothing in ``napari_sam_peft.core`` imports Qt or napari, so scripts, the command line
and cluster jobs can use it on machines without a display. A test enforces this.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    DeviceNotAvailableError,
    InvalidCheckpointError,
    ModelNotAvailableError,
    SamPeftError,
)

if TYPE_CHECKING:
    from .sam.architecture import SamArchitecture, build_sam
    from .sam.devices import select_device
    from .sam.loading import LoadedModel, ModelIdentity, load_model, save_model

#: names imported on first use, so that importing a light part of core (its errors, the job schema) does
#: not import torch: ``napari-sam-peft --help`` answers at once
_LAZY = {
    "SamArchitecture": ".sam.architecture",
    "build_sam": ".sam.architecture",
    "select_device": ".sam.devices",
    "LoadedModel": ".sam.loading",
    "ModelIdentity": ".sam.loading",
    "load_model": ".sam.loading",
    "save_model": ".sam.loading",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
