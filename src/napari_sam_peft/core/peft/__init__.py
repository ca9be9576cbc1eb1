"""Parameter-efficient finetuning of SAM: the paper's methods, presets and adapter files.

Typical use::

    from .. import load_model
    from . import spec_from_preset, attach, Adapter

    model = load_model("vit_b_lm")
    spec = spec_from_preset("late_lora", model.architecture.depth)       # blocks 6-11
    handle = attach(model.sam, spec)                                     # in place
    ...train handle.trainable_parameters()...
    Adapter.from_attached(handle, model).save("cells.safetensors")
    handle.detach()                                                      # exact base weights again
    Adapter.load("cells.safetensors").attach_to(model)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapter_file import Adapter, AdapterMismatchError, InvalidAdapterError
    from .attachment import (
        AdapterAttachError,
        AttachedPeft,
        QuantizationUnavailableError,
        attach,
        attached_to,
        frozen_prefix_stages,
    )
    from .blocks import InvalidBlocksError, format_blocks, parse_blocks
    from .counting import parameter_count
    from .layers import MergeNotSupportedError
    from .meta_count import count_trainable_parameters
    from .methods import METHODS, PeftMethod, UnknownMethodError, get_method, register_method
    from .options import (
        AdaptFormerOptions,
        DecoderLoraOptions,
        FactOptions,
        InvalidOptionError,
        LoraOptions,
        MethodOptions,
    )
    from .presets import PRESETS, PeftSpec, Preset, make_spec, spec_from_preset
    from .recommend import Recommendation, recommend_preset

#: each name's module, imported on first use: the presets and the job schema (what the command line's
#: parser needs) import no torch, so ``napari-sam-peft --help`` answers at once
_LAZY = {
    "Adapter": ".adapter_file",
    "AdapterMismatchError": ".adapter_file",
    "InvalidAdapterError": ".adapter_file",
    "AdapterAttachError": ".attachment",
    "AttachedPeft": ".attachment",
    "QuantizationUnavailableError": ".attachment",
    "attach": ".attachment",
    "attached_to": ".attachment",
    "frozen_prefix_stages": ".attachment",
    "InvalidBlocksError": ".blocks",
    "format_blocks": ".blocks",
    "parse_blocks": ".blocks",
    "parameter_count": ".counting",
    "MergeNotSupportedError": ".layers",
    "count_trainable_parameters": ".meta_count",
    "METHODS": ".methods",
    "PeftMethod": ".methods",
    "UnknownMethodError": ".methods",
    "get_method": ".methods",
    "register_method": ".methods",
    "AdaptFormerOptions": ".options",
    "DecoderLoraOptions": ".options",
    "FactOptions": ".options",
    "InvalidOptionError": ".options",
    "LoraOptions": ".options",
    "MethodOptions": ".options",
    "PRESETS": ".presets",
    "PeftSpec": ".presets",
    "Preset": ".presets",
    "make_spec": ".presets",
    "spec_from_preset": ".presets",
    "Recommendation": ".recommend",
    "recommend_preset": ".recommend",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "METHODS",
    "PRESETS",
    "AdaptFormerOptions",
    "Adapter",
    "AdapterAttachError",
    "AdapterMismatchError",
    "AttachedPeft",
    "DecoderLoraOptions",
    "FactOptions",
    "InvalidAdapterError",
    "InvalidBlocksError",
    "InvalidOptionError",
    "LoraOptions",
    "MergeNotSupportedError",
    "MethodOptions",
    "PeftMethod",
    "PeftSpec",
    "Preset",
    "QuantizationUnavailableError",
    "Recommendation",
    "UnknownMethodError",
    "attach",
    "attached_to",
    "count_trainable_parameters",
    "format_blocks",
    "frozen_prefix_stages",
    "get_method",
    "make_spec",
    "parameter_count",
    "parse_blocks",
    "recommend_preset",
    "register_method",
    "spec_from_preset",
]
