"""The floating-point precision a model trains and embeds in, chosen by measuring the hardware.

The candidates are what the hardware computes natively: bfloat16 autocast on a CPU with
AVX512-BF16 or AMX and on CUDA GPUs of compute capability 8.0 or newer, float16 (with a gradient
scaler) on CUDA GPUs; float32 everywhere (Apple's MPS only has float32, where micro_sam and
Cellpose also stay). ``auto`` takes float32 where it is the only candidate, and otherwise what a
short probe of the model measured fastest among the candidates whose numbers agree with float32's
(``precision_probe``): a CPU flag is not a fast kernel. Asking for a precision the machine only
emulates is an error that says what it supports; asking for one the probe found slower runs it,
with a warning.

Autocast keeps the weights in float32: the trainable tensors, their gradients and the optimizer
state stay float32, so adapters are saved in float32 whatever precision trained them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..errors import SamPeftError
from .internals import cpu_has_native_bf16

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
if TYPE_CHECKING:
    import torch


class PrecisionNotAvailableError(SamPeftError):
    """The requested precision is not native on this machine."""


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` (fp32, bf16, fp16) on ``device_type``, and why it was chosen."""

    name: str
    device_type: str
    reason: str = ""
    #: what the user should know about a precision they asked for (the probe found it slower), or ""
    warning: str = ""
    #: the probe's figures behind the choice (``"probe: fp32 120 ms, bf16 48 ms"``), or ""
    probe: str = ""

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the autocast regions compute in."""
        import torch

        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.name]

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
        import torch

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


#: what a precision's outputs must share with float32's (cosine similarity) to be used at all
AGREEMENT_MIN = 0.99
#: how much faster than float32 a reduced precision must be for ``auto`` to take it, so that noise in
#: the timings does not flip the choice between runs (and ``auto`` is never slower than float32)
SPEEDUP_MIN = 1.1
USES = ("embed", "train", "decoder")


@dataclass(frozen=True)
class PrecisionFigures:
    """One precision's probe figures: seconds for each use, and agreement with float32 (1.0 for fp32)."""

    name: str
    #: the encoder block forward, without gradients
    embed_s: float
    #: the block and one decoder pass, forward and backward; None where the probe did not time
    #: training, the block alone being 3x slower than float32's
    train_s: float | None
    agreement: float = 1.0
    #: the decoder pass alone, forward and backward (training with the whole encoder frozen)
    decoder_s: float | None = None

    def seconds(self, use: str) -> float:
        """The figure for ``use`` (``"embed"``, ``"train"`` or ``"decoder"``); infinite where it was not timed."""
        value = {"embed": self.embed_s, "train": self.train_s, "decoder": self.decoder_s}[use]
        return float("inf") if value is None else value


@dataclass(frozen=True)
class ProbeResult:
    """The figures of every precision a device offers for one model, float32 first."""

    key: str
    figures: tuple[PrecisionFigures, ...]

    def of(self, name: str) -> PrecisionFigures | None:
        """The figures of precision ``name``, or None if it was not probed."""
        return next((f for f in self.figures if f.name == name), None)

    def describe(self, use: str) -> str:
        """The figures for ``use`` in a few words: ``"probe: fp32 120 ms, bf16 48 ms"``."""
        parts = []
        for figures in self.figures:
            seconds = figures.seconds(use)
            part = f"{figures.name} {seconds * 1000:.0f} ms" if seconds < float("inf") else f"{figures.name} >3x"
            if figures.agreement < AGREEMENT_MIN:
                part += f" (agrees {figures.agreement:.3f}, too far from fp32)"
            parts.append(part)
        return "probe: " + ", ".join(parts)

    def to_json(self) -> dict:
        """A JSON-ready dict (what the cache file holds)."""
        return {"key": self.key, "figures": [asdict(f) for f in self.figures]}

    @classmethod
    def from_json(cls, values: dict) -> ProbeResult:
        """The result from :meth:`to_json`'s dict."""
        return cls(values["key"], tuple(PrecisionFigures(**f) for f in values["figures"]))


def choose(result: ProbeResult, use: str) -> tuple[str, str]:
    """The precision ``auto`` takes for ``use`` from probe figures, and why.

    A reduced precision is taken only when it agrees with float32 (:data:`AGREEMENT_MIN`) and is
    at least :data:`SPEEDUP_MIN` times faster than float32; among several such, the fastest.
    """
    if use not in USES:
        raise ValueError(f"use must be one of {USES}, not {use!r}")
    fp32 = result.of("fp32")
    if fp32 is None:
        raise ValueError("a probe result always has float32's figures")
    best = fp32
    for figures in result.figures:
        if figures.name == "fp32" or figures.agreement < AGREEMENT_MIN:
            continue
        if figures.seconds(use) * SPEEDUP_MIN <= fp32.seconds(use) and figures.seconds(use) < best.seconds(use):
            best = figures
    if best is fp32:
        reduced = [f for f in result.figures if f.name != "fp32"]
        if any(f.agreement < AGREEMENT_MIN for f in reduced):
            why = "a reduced precision's numbers are too far from float32's"
        else:
            why = "no reduced precision is faster here"
        return "fp32", f"{why} ({result.describe(use)})"
    speedup = fp32.seconds(use) / max(best.seconds(use), 1e-9)
    return best.name, f"measured {speedup:.1f}x faster than fp32 ({result.describe(use)})"


def slower_than_fp32(result: ProbeResult, name: str, use: str) -> str:
    """A warning when precision ``name`` measured slower than float32 for ``use``, else ``""``."""
    fp32, figures = result.of("fp32"), result.of(name)
    if name == "fp32" or fp32 is None or figures is None or figures.seconds(use) <= fp32.seconds(use):
        return ""
    ratio = figures.seconds(use) / max(fp32.seconds(use), 1e-9)
    return f"{name} measured {ratio:.1f}x slower than fp32 on this machine ({result.describe(use)})"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (not by emulation)."""
    import torch

    if device.type == "cpu":
        return cpu_has_native_bf16()
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
    import torch

    if device.type == "cpu":
        return "this CPU (no AVX512-BF16 or AMX)" if not native_bf16(device) else "this CPU"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"this GPU ({torch.cuda.get_device_name(device)}, compute capability {major}.{minor})"
    return f"the {device.type} device"


def resolve_precision(
    requested: str,
    device: str | torch.device,
    probe: Callable[[], ProbeResult] | None = None,
    use: str = "train",
) -> Precision:
    """The precision to run in on ``device``: ``auto`` measures (``probe``); others are checked.

    Parameters
    ----------
    requested
        ``auto`` or one of ``fp32``, ``bf16``, ``fp16``.
    device
        Where the model runs.
    probe
        Returns the model's probe figures (``precision_probe.model_probe``); called only where the
        device has a reduced precision to choose. Without it ``auto`` stays in float32.
    use
        ``"embed"``, ``"train"`` or ``"decoder"`` (training with the whole encoder frozen): which of the
        probe's figures decides.

    Raises
    ------
    PrecisionNotAvailableError
        For a name that is not one of :data:`PRECISION_CHOICES`, or a precision ``device`` does not
        run natively (the message lists the ones it does).
    """
    import torch

    device = torch.device(device)
    supported = supported_precisions(device)
    if requested == "auto":
        hardware = _hardware(device)
        if supported == ["fp32"]:
            why = "Apple GPUs train in float32" if device.type == "mps" else f"{hardware} has no native bfloat16"
            return Precision("fp32", device.type, f"auto: {why}")
        if probe is None:
            return Precision("fp32", device.type, f"auto: float32 until a probe of the model measures {hardware}")
        result = probe()
        name, why = choose(result, use)
        return Precision(name, device.type, f"auto: {why}", probe=result.describe(use))
    if requested not in PRECISION_CHOICES[1:]:
        raise PrecisionNotAvailableError(
            f"Unknown precision {requested!r}: choose one of {', '.join(PRECISION_CHOICES)}."
        )
    if requested not in supported:
        raise PrecisionNotAvailableError(
            f"{requested} is not native on {_hardware(device)}, so it would be emulated and slower than "
            f"float32. This machine supports: {', '.join(supported)}. Use --precision auto."
        )
    if probe is None or requested == "fp32":
        return Precision(requested, device.type, "given")
    result = probe()
    warning = slower_than_fp32(result, requested, use)
    reason = f"given; {warning}" if warning else "given"
    return Precision(requested, device.type, reason, warning, result.describe(use))
