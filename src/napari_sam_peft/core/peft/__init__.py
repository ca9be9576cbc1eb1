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

from .adapter_file import Adapter, AdapterMismatchError, InvalidAdapterError
from .attach import (
    AdapterAttachError,
    AttachedPeft,
    QuantizationUnavailableError,
    attach,
    attached_to,
)
from .blocks import InvalidBlocksError, format_blocks, parse_blocks
from .counting import count_trainable_parameters
from .layers import MergeNotSupportedError
from .methods import METHODS, InvalidOptionError, UnknownMethodError, get_method
from .presets import PRESETS, PeftSpec, make_spec, spec_from_preset
from .recommend import Recommendation, recommend_preset

__all__ = [
    "METHODS",
    "PRESETS",
    "Adapter",
    "AdapterAttachError",
    "AdapterMismatchError",
    "AttachedPeft",
    "InvalidAdapterError",
    "InvalidBlocksError",
    "InvalidOptionError",
    "MergeNotSupportedError",
    "PeftSpec",
    "QuantizationUnavailableError",
    "Recommendation",
    "UnknownMethodError",
    "attach",
    "attached_to",
    "count_trainable_parameters",
    "format_blocks",
    "get_method",
    "make_spec",
    "parse_blocks",
    "recommend_preset",
    "spec_from_preset",
]
