"""The floating-point precision a model trains and embeds in, chosen from the hardware.

``auto`` takes bfloat16 autocast where the hardware computes it natively (a CPU with AVX512-BF16
or AMX, a CUDA GPU of compute capability 8.0 or newer), float16 with a gradient scaler on older
CUDA GPUs, and float32 elsewhere (Apple's MPS included, where micro_sam and Cellpose also stay in
float32). Asking for a precision the machine only emulates is an error that says what it supports:
emulated bfloat16 is slower than float32, and a silent slowdown is worse than a clear refusal.

Autocast keeps the weights in float32: the trainable tensors, their gradients and the optimizer
state stay float32, so adapters are saved in float32 whatever precision trained them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..errors import SamPeftError

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionNotAvailableError(SamPeftError):
    """The requested precision is not native on this machine."""


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` (fp32, bf16, fp16) on ``device_type``, and why it was chosen."""

    name: str
    device_type: str
    reason: str = ""

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the autocast regions compute in."""
        return _DTYPES[self.name]

    @property
    def needs_grad_scaler(self) -> bool:
        """float16 gradients underflow without loss scaling; bfloat16 has float32's range."""
        return self.name == "fp16"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Run the enclosed forward pass in this precision (a no-op for fp32)."""
        if self.name == "fp32":
            yield
            return
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            yield

    @contextlib.contextmanager
    def encoder(self, encoder: torch.nn.Module) -> Iterator[None]:
        """Run ``encoder`` (an image encoder) in this precision, handing its output back in float32.

        Embeddings are stored and prompted in float32 (numpy, micro_sam's zarr entries and the mask
        decoder have no bfloat16), so only the encoder's own compute is reduced.
        """
        if self.name == "fp32":
            yield
            return
        handle = encoder.register_forward_hook(lambda _module, _inputs, output: output.float())
        try:
            with self.autocast():
                yield
        finally:
            handle.remove()


FP32_CPU = Precision("fp32", "cpu", "float32")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (not by emulation)."""
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    return False


def supported_precisions(device: torch.device) -> list[str]:
    """The precisions ``device`` runs natively, float32 first."""
    names = ["fp32"]
    if native_bf16(device):
        names.append("bf16")
    if device.type == "cuda":
        names.append("fp16")
    return names


def _hardware(device: torch.device) -> str:
    if device.type == "cpu":
        return "this CPU (no AVX512-BF16 or AMX)" if not native_bf16(device) else "this CPU"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"this GPU ({torch.cuda.get_device_name(device)}, compute capability {major}.{minor})"
    return f"the {device.type} device"


def resolve_precision(requested: str, device: str | torch.device) -> Precision:
    """The precision to run in on ``device``: ``auto`` picks from the hardware; others are checked.

    Raises
    ------
    PrecisionNotAvailableError
        For a name that is not one of :data:`PRECISION_CHOICES`, or a precision ``device`` does not
        run natively (the message lists the ones it does).
    """
    device = torch.device(device)
    supported = supported_precisions(device)
    if requested == "auto":
        if "bf16" in supported:
            return Precision("bf16", device.type, f"auto: {_hardware(device)} computes bfloat16 natively")
        hardware = _hardware(device)
        if "fp16" in supported:
            return Precision("fp16", device.type, f"auto: {hardware} has no bfloat16; float16 with loss scaling")
        why = "Apple GPUs train in float32" if device.type == "mps" else f"{hardware} has no native bfloat16"
        return Precision("fp32", device.type, f"auto: {why}")
    if requested not in _DTYPES:
        raise PrecisionNotAvailableError(
            f"Unknown precision {requested!r}: choose one of {', '.join(PRECISION_CHOICES)}."
        )
    if requested not in supported:
        raise PrecisionNotAvailableError(
            f"{requested} is not native on {_hardware(device)}, so it would be emulated and slower than "
            f"float32. This machine supports: {', '.join(supported)}. Use --precision auto."
        )
    return Precision(requested, device.type, "given")
