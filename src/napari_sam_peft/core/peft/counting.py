"""Counting parameters: the one counter, and what a spec trains on an architecture.

Every count of parameters in the package (an attached method's trainable parameters, an
adapter file's tensors, the estimate's shares) is :func:`parameter_count`. Counts for an
architecture are taken on the meta device: no memory, no weights, milliseconds even for vit_h.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from ..sam.architecture import Architecture, build_sam
from .options import LoraOptions
from .presets import PeftSpec

if TYPE_CHECKING:
    from .attach import AttachedPeft


def parameter_count(tensors: Iterable[torch.Tensor]) -> int:
    """How many numbers the tensors hold together."""
    return sum(t.numel() for t in tensors)


def attached_on_meta(spec: PeftSpec, architecture: Architecture) -> AttachedPeft:
    """``spec`` attached to a model of ``architecture`` built on the meta device (no memory, no weights).

    QLoRA attaches as LoRA: quantisation changes storage, not which tensors train.
    """
    from .attach import attach  # attach counts with parameter_count, so it is imported here

    sam = build_sam(architecture, device="meta")
    if isinstance(spec.options, LoraOptions) and spec.options.quantize:
        spec = replace(spec, options=replace(spec.options, quantize=False))
    return attach(sam, spec)


def count_trainable_parameters(spec: PeftSpec, architecture: Architecture) -> int:
    """How many parameters ``spec`` trains on a model of ``architecture`` (QLoRA counts like LoRA)."""
    return attached_on_meta(spec, architecture).num_trainable()
