"""Counting parameters: the one counter.

Every count of parameters in the package (an attached method's trainable parameters, an
adapter file's tensors, the estimate's shares) is :func:`parameter_count`; what a spec trains
on an architecture is counted on the meta device in :mod:`.meta_count`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def parameter_count(tensors: Iterable[torch.Tensor]) -> int:
    """How many numbers the tensors hold together."""
    return sum(t.numel() for t in tensors)
