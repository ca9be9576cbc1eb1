"""Named presets with the paper's defaults, and the spec they resolve to for one model.

A :class:`PeftSpec` is a method, a block selection and the method's options, resolved for
a model of a given depth. Presets are the names users pick; ``blocks`` and any option
can be overridden.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .blocks import format_blocks, parse_blocks
from .methods import UnknownMethodError, get_method


@dataclass(frozen=True)
class Preset:
    name: str
    method: str
    blocks: str
    options: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("full_ft", "full_ft", "all", summary="everything (the paper's full finetuning)"),
        Preset("freeze_encoder", "freeze_encoder", "none", summary="prompt encoder and mask decoder"),
        Preset("ln_tune", "ln_tune", "all", summary="LayerNorms of every block"),
        Preset("bias_tune", "bias_tune", "all", summary="biases of every block"),
        Preset("attn_tune", "attn_tune", "all", summary="attention of every block"),
        Preset("ssf", "ssf", "all", summary="scale and shift everywhere"),
        Preset("fact", "fact", "all", {"rank": 16, "dropout": 0.1}, summary="FacT, rank 16"),
        Preset("lora", "lora", "all", {"rank": 32, "targets": ("q", "v")}, summary="LoRA on q, v, rank 32"),
        Preset(
            "qlora",
            "lora",
            "all",
            {"rank": 32, "targets": ("q", "v"), "quantize": True},
            summary="LoRA on a 4-bit encoder (CUDA)",
        ),
        Preset("adaptformer", "adaptformer", "all", {"projection_size": 64}, summary="AdaptFormer, width 64"),
        Preset(
            "late_lora",
            "lora",
            "late",
            {"rank": 32, "targets": ("q", "k", "v", "mlp")},
            summary="LoRA on q, k, v and MLP of the second half of the blocks",
        ),
        Preset("late_ft", "full_ft", "late", summary="full finetuning of the second half of the blocks"),
        Preset(
            "decoder_lora",
            "decoder_lora",
            "none",
            {"rank": 16, "targets": ("q", "v")},
            summary="LoRA in the mask decoder, frozen encoder",
        ),
    )
}


@dataclass(frozen=True)
class PeftSpec:
    """What to apply: a method, the encoder blocks it adapts, and its options."""

    method: str
    blocks: tuple[int, ...]
    options: Mapping[str, Any]
    preset: str | None = None

    def to_json(self) -> str:
        options = {k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()}
        return json.dumps(
            {"method": self.method, "blocks": list(self.blocks), "options": options, "preset": self.preset},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> PeftSpec:
        values = json.loads(text)
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in values.get("options", {}).items()}
        return cls(
            method=values["method"],
            blocks=tuple(values.get("blocks", ())),
            options=options,
            preset=values.get("preset"),
        )

    def describe(self, depth: int | None = None) -> str:
        where = format_blocks(self.blocks, depth) if self.blocks else "decoder"
        return f"{self.preset or self.method} ({self.method}, blocks {where})"


def make_spec(
    method: str,
    depth: int,
    blocks: str | tuple[int, ...] | None = None,
    options: Mapping[str, Any] | None = None,
    preset: str | None = None,
) -> PeftSpec:
    """Resolve a method, block selection and options for a model with ``depth`` encoder blocks."""
    peft_method = get_method(method)
    resolved_options = peft_method.options(options)
    if peft_method.uses_blocks:
        selected = parse_blocks(blocks if blocks not in (None, "none") else "all", depth)
    else:
        selected = ()
    return PeftSpec(method=method, blocks=selected, options=resolved_options, preset=preset)


def spec_from_preset(
    name: str,
    depth: int,
    blocks: str | tuple[int, ...] | None = None,
    **overrides: Any,
) -> PeftSpec:
    """The spec of preset ``name`` for a model of ``depth`` blocks, with optional overrides.

    Raises
    ------
    UnknownMethodError
        For a preset name that does not exist (the message lists them).
    """
    try:
        preset = PRESETS[name]
    except KeyError:
        raise UnknownMethodError(f"Unknown preset {name!r}. Choose one of: {', '.join(PRESETS)}.") from None
    return make_spec(
        preset.method,
        depth,
        blocks=blocks if blocks is not None else preset.blocks,
        options={**preset.options, **overrides},
        preset=name,
    )
