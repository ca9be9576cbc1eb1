"""QLoRA's 4-bit encoder: every frozen Linear of the image encoder becomes a bitsandbytes ``Linear4bit``.

Quantisation changes how the frozen weights are stored, not which tensors train, so it is
undone exactly on detach (the original Linears are kept on the CPU) and counts like LoRA.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import nn

from ..errors import SamPeftError

#: (parent module, attribute name, original Linear on the CPU)
Quantized = tuple[nn.Module, str, nn.Module]


class QuantizationUnavailableError(SamPeftError):
    """QLoRA needs CUDA and bitsandbytes."""


def quantization_backend(device: torch.device) -> ModuleType:
    """bitsandbytes, where the model's device can use it.

    Raises
    ------
    QuantizationUnavailableError
        Off CUDA, or without bitsandbytes installed (the message says what to use or install).
    """
    if device.type != "cuda":
        raise QuantizationUnavailableError(
            "QLoRA quantises the image encoder to 4 bit with bitsandbytes, which needs an NVIDIA GPU "
            f"(this model is on {device.type}). Use the 'lora' preset: the same adapters on a "
            "full-precision encoder."
        )
    try:
        import bitsandbytes
    except ImportError:
        raise QuantizationUnavailableError(
            "QLoRA needs the bitsandbytes package: pip install 'napari-sam-peft[qlora]'."
        ) from None
    return bitsandbytes


def quantize_frozen_linears(encoder: nn.Module, bnb: ModuleType, done: list[Quantized]) -> None:
    """Replace each frozen ``nn.Linear`` under ``encoder`` by a 4-bit one, recording each in ``done``
    as it goes (so a failure half-way can still be undone)."""
    device = next(encoder.parameters()).device
    for parent in list(encoder.modules()):
        for attr, child in list(parent.named_children()):
            if type(child) is not nn.Linear or child.weight.requires_grad:
                continue
            quantized = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=torch.float32,
                quant_type="nf4",
            )
            quantized.weight = bnb.nn.Params4bit(
                child.weight.data.to("cpu"), requires_grad=False, quant_type="nf4"
            )
            if child.bias is not None:
                quantized.bias = nn.Parameter(child.bias.data.clone(), requires_grad=False)
            setattr(parent, attr, quantized.to(device))  # quantises on the move to CUDA
            done.append((parent, attr, child.to("cpu")))
