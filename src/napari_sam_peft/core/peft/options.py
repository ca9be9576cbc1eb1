"""Typed options of the PEFT methods: one frozen dataclass per method, in the manner of HF peft's configs.

Each field is one option, made with :func:`option`: its default is the method's default (the one
place defaults live: presets keep only what they change), its metadata carries a help text and
a check. Values are checked when the options are made, so a bad rank or target is an
:class:`InvalidOptionError` before any model is touched. ``to_dict`` gives what adapter files
record under ``spec.options``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self

from ..errors import SamPeftError


class InvalidOptionError(SamPeftError):
    """A method option that does not exist or has a bad value."""


#: A check takes the options, the option's name and its value, and returns the value to keep
#: (normalised) or raises InvalidOptionError.
Check = Callable[[Any, str, Any], Any]


def option(default: Any, help: str, check: Check | None = None) -> Any:
    """A dataclass field for one option: its default, a help text and a check of given values."""
    return field(default=default, metadata={"help": help, "check": check})


@dataclass(frozen=True)
class MethodOptions:
    """Options of a method that has none (full_ft, freeze_encoder, ln/bias/attn tune, ssf), and the
    base class of every method's options."""

    #: how messages name the method
    label: ClassVar[str] = "This method"

    def __post_init__(self) -> None:
        for f in fields(self):
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(self, f.name, getattr(self, f.name)))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def build(cls, method: str, given: Mapping[str, Any] | None = None) -> Self:
        """The defaults with ``given`` values in their place.

        Raises
        ------
        InvalidOptionError
            For a name the method does not have (the message lists its options) or a bad value.
        """
        given = dict(given or {})
        unknown = sorted(set(given) - set(cls.names()))
        if unknown:
            allowed = ", ".join(sorted(cls.names())) or "none"
            raise InvalidOptionError(f"Method {method!r} has no option {unknown[0]!r} (its options: {allowed}).")
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        """The options as JSON values (tuples as lists), by name."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @property
    def quantizes_encoder(self) -> bool:
        """Whether the encoder's frozen Linears are quantised to 4 bit (QLoRA)."""
        return False


def positive_int(options: MethodOptions, name: str, value: Any) -> int:
    """A positive integer (an integral float is taken as its integer)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidOptionError(f"{options.label} {name} must be a positive integer, not {value!r}.")
    return value


def fraction(options: MethodOptions, name: str, value: Any) -> float:
    """A number from 0 to below 1 (a dropout probability)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise InvalidOptionError(f"{options.label} {name} must be a number from 0 to below 1, not {value!r}.")
    return value


def flag(options: MethodOptions, name: str, value: Any) -> bool:
    """True or False."""
    if not isinstance(value, bool):
        raise InvalidOptionError(f"{options.label} {name} must be true or false, not {value!r}.")
    return value


def positive_or_none(options: MethodOptions, name: str, value: Any) -> float | None:
    """A positive number, or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
        raise InvalidOptionError(
            f"{options.label} {name} must be a positive number or None (= rank), not {value!r}."
        )
    return value


def targets_among_allowed(options: Any, name: str, value: Any) -> tuple[str, ...]:
    """Names among ``options.allowed_targets``, given as a sequence or as text (``"q,v"``)."""
    targets = tuple(t.strip() for t in (value.split(",") if isinstance(value, str) else map(str, value)))
    bad = sorted(set(targets) - set(options.allowed_targets)) or ([] if targets else ["(none)"])
    if bad:
        allowed = ", ".join(sorted(options.allowed_targets))
        raise InvalidOptionError(f"{options.label}: cannot adapt {bad[0]!r}; choose {name} among {allowed}.")
    return targets


@dataclass(frozen=True)
class LowRankOptions(MethodOptions):
    """What LoRA and decoder LoRA share: a rank, a scale and which projections to adapt."""

    allowed_targets: ClassVar[tuple[str, ...]] = ("q", "k", "v")

    rank: int = option(32, "rank r of the update B A (A: r x in, B: out x r)", positive_int)
    alpha: float | None = option(
        None, "the update is scaled by alpha / rank (None: alpha = rank)", positive_or_none
    )
    targets: tuple[str, ...] = option(
        ("q", "v"), "which projections to adapt (see each method)", targets_among_allowed
    )

    @property
    def scale_alpha(self) -> float:
        """``alpha``, or ``rank`` when alpha is None (scale 1, the paper's)."""
        return float(self.alpha if self.alpha is not None else self.rank)


@dataclass(frozen=True)
class LoraOptions(LowRankOptions):
    """LoRA in the image encoder's blocks (``lora``; ``qlora`` and ``late_lora`` are presets of it).

    Targets: any of ``q``, ``k``, ``v`` (slices of the fused qkv) and ``mlp`` (both MLP Linears).
    """

    label: ClassVar[str] = "LoRA"
    allowed_targets: ClassVar[tuple[str, ...]] = ("q", "k", "v", "mlp")

    quantize: bool = option(
        False, "quantise the frozen encoder Linears to 4 bit (QLoRA; CUDA, bitsandbytes)", flag
    )

    @property
    def quantizes_encoder(self) -> bool:
        """``quantize``."""
        return self.quantize


@dataclass(frozen=True)
class DecoderLoraOptions(LowRankOptions):
    """LoRA in the mask decoder's attention layers (``decoder_lora``).

    Targets: any of ``q``, ``k``, ``v``, ``out`` (the projections of each attention layer).
    """

    label: ClassVar[str] = "Decoder LoRA"
    allowed_targets: ClassVar[tuple[str, ...]] = ("q", "k", "v", "out")

    rank: int = option(16, "rank r of the update B A", positive_int)


@dataclass(frozen=True)
class FactOptions(MethodOptions):
    """FacT on each selected block's fused qkv (``fact``)."""

    label: ClassVar[str] = "FacT"

    rank: int = option(16, "rank r of the shared factors U (d -> r) and V (r -> d)", positive_int)
    dropout: float = option(0.1, "dropout after the per-projection factor S", fraction)


@dataclass(frozen=True)
class AdaptFormerOptions(MethodOptions):
    """AdaptFormer's bottleneck beside each selected block's MLP (``adaptformer``)."""

    label: ClassVar[str] = "AdaptFormer"

    projection_size: int = option(64, "width of the bottleneck (down-projection size)", positive_int)
    dropout: float = option(0.0, "dropout inside the bottleneck", fraction)
