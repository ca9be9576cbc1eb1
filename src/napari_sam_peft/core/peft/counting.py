"""Trainable-parameter counts, computed on the meta device (no memory, no weights)."""

from __future__ import annotations

from dataclasses import replace

from ..sam.architecture import SamArchitecture, build_sam
from .attach import attach
from .presets import PeftSpec


def count_trainable_parameters(spec: PeftSpec, architecture: SamArchitecture) -> int:
    """How many parameters ``spec`` trains on a model of ``architecture``.

    QLoRA counts like LoRA: quantisation changes storage, not which tensors train.
    """
    sam = build_sam(architecture, device="meta")
    if spec.options.get("quantize"):
        spec = replace(spec, options={**spec.options, "quantize": False})
    handle = attach(sam, spec)
    return handle.num_trainable()
