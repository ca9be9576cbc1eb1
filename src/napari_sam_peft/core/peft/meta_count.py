"""What a spec trains on an architecture, counted on a model built on the meta device.

No memory, no weights: milliseconds even for vit_h.
"""

from __future__ import annotations

from dataclasses import replace

from ..sam.architecture import Architecture, build_sam
from .attachment import AttachedPeft, attach
from .options import LoraOptions
from .presets import PeftSpec


def attached_on_meta(spec: PeftSpec, architecture: Architecture) -> AttachedPeft:
    """``spec`` attached to a model of ``architecture`` built on the meta device (no memory, no weights).

    QLoRA attaches as LoRA: quantisation changes storage, not which tensors train.
    """
    sam = build_sam(architecture, device="meta")
    if isinstance(spec.options, LoraOptions) and spec.options.quantize:
        spec = replace(spec, options=replace(spec.options, quantize=False))
    return attach(sam, spec)


def count_trainable_parameters(spec: PeftSpec, architecture: Architecture) -> int:
    """How many parameters ``spec`` trains on a model of ``architecture`` (QLoRA counts like LoRA)."""
    return attached_on_meta(spec, architecture).num_trainable()
