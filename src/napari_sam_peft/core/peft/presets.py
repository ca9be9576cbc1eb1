"""Named presets with the paper's settings, and the spec they resolve to for one model.

A :class:`Preset` is a method, a block selection and only the options it changes from the
method's defaults (which live in the method's options class, ``options.py``). A
:class:`PeftSpec` is a method, the selected blocks of a model of a given depth and the method's
typed options. Presets are the names users pick; ``blocks`` and any option can be overridden.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .blocks import format_blocks, parse_blocks
from .options import MethodOptions


@dataclass(frozen=True)
class Preset:
    """A name users pick: a method, a block selection and the options it changes."""

    name: str
    method: str
    blocks: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
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
        Preset("fact", "fact", "all", summary="FacT, rank 16"),
        Preset("lora", "lora", "all", summary="LoRA on q, v, rank 32"),
        Preset("qlora", "lora", "all", {"quantize": True}, summary="LoRA on a 4-bit encoder (CUDA)"),
        Preset("adaptformer", "adaptformer", "all", summary="AdaptFormer, width 64"),
        Preset(
            "late_lora",
            "lora",
            "late",
            {"targets": ("q", "k", "v", "mlp")},
            summary="LoRA on q, k, v and MLP of the second half of the blocks",
        ),
        Preset("late_ft", "full_ft", "late", summary="full finetuning of the second half of the blocks"),
        Preset("decoder_lora", "decoder_lora", "none", summary="LoRA in the mask decoder, frozen encoder"),
    )
}


@dataclass(frozen=True)
class PeftSpec:
    """What to apply: a method, the encoder blocks it adapts, and its options."""

    method: str
    blocks: tuple[int, ...]
    options: MethodOptions
    preset: str | None = None

    def to_json(self) -> str:
        """The spec as adapter files record it (``{"method", "blocks", "options", "preset"}``)."""
        return json.dumps(
            {
                "method": self.method,
                "blocks": list(self.blocks),
                "options": self.options.to_dict(),
                "preset": self.preset,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> PeftSpec:
        """The spec :meth:`to_json` wrote.

        Raises
        ------
        UnknownMethodError
            For a method this version does not know.
        InvalidOptionError
            For options the method does not have.
        """
        from .methods import get_method

        values = json.loads(text)
        method = get_method(values["method"])
        return cls(
            method=method.name,
            blocks=tuple(values.get("blocks", ())),
            options=method.options(values.get("options", {})),
            preset=values.get("preset"),
        )

    def describe(self, depth: int | None = None) -> str:
        """``"late_lora (lora, blocks 6-11)"``; ``depth`` lets a selection of every block read ``all``."""
        where = format_blocks(self.blocks, depth) if self.blocks else "decoder"
        return f"{self.preset or self.method} ({self.method}, blocks {where})"


def make_spec(
    method: str,
    depth: int,
    blocks: str | tuple[int, ...] | None = None,
    options: Mapping[str, Any] | MethodOptions | None = None,
    preset: str | None = None,
) -> PeftSpec:
    """Resolve a method, block selection and options for a model with ``depth`` encoder blocks.

    Raises
    ------
    UnknownMethodError
        For an unknown method.
    InvalidOptionError
        For an option the method does not have, or a bad value.
    InvalidBlocksError
        For a block selection that does not parse or names blocks the model does not have.
    """
    from .methods import get_method

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
    InvalidOptionError
        For an override the preset's method does not have, or a bad value.
    """
    from .methods import UnknownMethodError

    try:
        preset = PRESETS[name]
    except KeyError:
        raise UnknownMethodError(f"Unknown preset {name!r}. Choose one of: {', '.join(PRESETS)}.") from None
    return make_spec(
        preset.method,
        depth,
        blocks=blocks if blocks is not None else preset.blocks,
        options={**preset.overrides, **overrides},
        preset=name,
    )
