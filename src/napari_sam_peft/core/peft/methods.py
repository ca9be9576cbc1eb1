"""The PEFT methods of the paper (and LoRA in the mask decoder), as one registry.

A method knows two things:

- ``inject``: which modules of SAM it wraps (``layers.py``), for a block selection;
- ``selects``: which parameters of the (injected) model train.

Encoder methods always train the prompt encoder and mask decoder too, as in the paper.
The stem (patch embedding; for full finetuning also the position embedding and neck)
is adapted only when every block is selected, so ``full_ft`` on all blocks is the whole
model and ``full_ft`` on blocks 6-11 is the paper's "late FT".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import SamPeftError
from .layers import FacTQKV, LoRALinear, ParallelAdapter, PeftWrapper, ScaleShift


class UnknownMethodError(SamPeftError):
    """A method or preset name this version does not know."""


class InvalidOptionError(SamPeftError):
    """A method option that does not exist or has a bad value."""


#: (parent module, attribute name, original module, wrapper)
Replacement = tuple[nn.Module, str, nn.Module, PeftWrapper]

DECODER_PREFIXES = ("prompt_encoder.", "mask_decoder.")


def _in_blocks(name: str, blocks: tuple[int, ...]) -> bool:
    if not name.startswith("image_encoder.blocks."):
        return False
    return int(name.split(".")[2]) in blocks


def _all_blocks(sam: nn.Module, blocks: tuple[int, ...]) -> bool:
    return len(blocks) == len(sam.image_encoder.blocks)


def _wrap(parent: nn.Module, attr: str, wrapper: PeftWrapper, out: list[Replacement]) -> None:
    original = getattr(parent, attr)
    setattr(parent, attr, wrapper)
    out.append((parent, attr, original, wrapper))


@dataclass(frozen=True)
class PeftMethod:
    """Base class of a method. Subclasses override ``inject`` and/or ``selects_base``."""

    name: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    uses_blocks: bool = True
    trains_decoder: bool = True
    mergeable: bool = True

    def options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """The defaults updated by ``given``; unknown names are an error."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise InvalidOptionError(
                f"Method {self.name!r} has no option {unknown[0]!r} (its options: {allowed})."
            )
        return {**self.defaults, **given}

    def inject(self, sam: nn.Module, blocks: tuple[int, ...], options: Mapping[str, Any]) -> list[Replacement]:
        return []

    def selects_base(self, name: str, sam: nn.Module, blocks: tuple[int, ...]) -> bool:
        """Whether an original (not added) parameter of SAM trains."""
        return self.trains_decoder and name.startswith(DECODER_PREFIXES)


@dataclass(frozen=True)
class FullFinetuning(PeftMethod):
    def selects_base(self, name, sam, blocks):
        if super().selects_base(name, sam, blocks) or _in_blocks(name, blocks):
            return True
        return name.startswith("image_encoder.") and _all_blocks(sam, blocks)


@dataclass(frozen=True)
class SelectiveTuning(PeftMethod):
    """Trains the chosen kind of existing parameter inside the selected blocks."""

    pattern: str = ""

    def selects_base(self, name, sam, blocks):
        if super().selects_base(name, sam, blocks):
            return True
        if not _in_blocks(name, blocks):
            return False
        if self.pattern == "bias":
            return name.endswith(".bias")
        if self.pattern == "norm":
            return ".norm1." in name or ".norm2." in name
        return f".{self.pattern}." in name


@dataclass(frozen=True)
class LoRA(PeftMethod):
    def inject(self, sam, blocks, options):
        targets = _targets(options["targets"], {"q", "k", "v", "mlp"}, self.name)
        rank, alpha = int(options["rank"]), float(options["alpha"] or options["rank"])
        done: list[Replacement] = []
        attn_parts = tuple(p for p in ("q", "k", "v") if p in targets)
        for index in blocks:
            block = sam.image_encoder.blocks[index]
            if attn_parts:
                _wrap(block.attn, "qkv", LoRALinear(block.attn.qkv, rank, alpha, attn_parts), done)
            if "mlp" in targets:
                _wrap(block.mlp, "lin1", LoRALinear(block.mlp.lin1, rank, alpha), done)
                _wrap(block.mlp, "lin2", LoRALinear(block.mlp.lin2, rank, alpha), done)
        return done


@dataclass(frozen=True)
class DecoderLoRA(PeftMethod):
    """LoRA inside the mask decoder's two-way transformer; the image encoder stays frozen.

    Because the encoder is untouched, image embeddings computed by the annotator stay valid
    and training runs from them alone.
    """

    def inject(self, sam, blocks, options):
        targets = _targets(options["targets"], {"q", "k", "v", "out"}, self.name)
        rank, alpha = int(options["rank"]), float(options["alpha"] or options["rank"])
        done: list[Replacement] = []
        for module in list(sam.mask_decoder.transformer.modules()):
            if not all(hasattr(module, f"{p}_proj") for p in ("q", "k", "v", "out")):
                continue
            for part in ("q", "k", "v", "out"):
                if part in targets:
                    attr = f"{part}_proj"
                    _wrap(module, attr, LoRALinear(getattr(module, attr), rank, alpha), done)
        return done


@dataclass(frozen=True)
class FacT(PeftMethod):
    def inject(self, sam, blocks, options):
        done: list[Replacement] = []
        for index in blocks:
            attn = sam.image_encoder.blocks[index].attn
            _wrap(attn, "qkv", FacTQKV(attn.qkv, int(options["rank"]), float(options["dropout"])), done)
        return done


@dataclass(frozen=True)
class SSF(PeftMethod):
    def inject(self, sam, blocks, options):
        done: list[Replacement] = []
        encoder = sam.image_encoder
        if _all_blocks(sam, blocks):
            proj = encoder.patch_embed.proj
            _wrap(encoder.patch_embed, "proj", ScaleShift(proj, proj.out_channels, channel_dim=1), done)
        for index in blocks:
            block = encoder.blocks[index]
            for parent, attr in (
                (block.attn, "qkv"),
                (block.attn, "proj"),
                (block.mlp, "lin1"),
                (block.mlp, "lin2"),
                (block, "norm1"),
                (block, "norm2"),
            ):
                module = getattr(parent, attr)
                channels = module.out_features if isinstance(module, nn.Linear) else module.normalized_shape[0]
                _wrap(parent, attr, ScaleShift(module, channels), done)
        return done


@dataclass(frozen=True)
class AdaptFormer(PeftMethod):
    def inject(self, sam, blocks, options):
        done: list[Replacement] = []
        for index in blocks:
            block = sam.image_encoder.blocks[index]
            dim = block.mlp.lin1.in_features
            adapter = ParallelAdapter(block.mlp, dim, int(options["projection_size"]), float(options["dropout"]))
            _wrap(block, "mlp", adapter, done)
        return done


def _targets(value: Any, allowed: set[str], method: str) -> set[str]:
    targets = {t.strip() for t in (value.split(",") if isinstance(value, str) else value)}
    if not targets or targets - allowed:
        bad = sorted(targets - allowed) or ["(none)"]
        raise InvalidOptionError(
            f"{method}: cannot adapt {bad[0]!r}; choose targets among {', '.join(sorted(allowed))}."
        )
    return targets


_LORA_DEFAULTS = {"rank": 32, "alpha": None, "targets": ("q", "v"), "quantize": False}

METHODS: dict[str, PeftMethod] = {
    m.name: m
    for m in (
        FullFinetuning("full_ft", "Full finetuning of the selected blocks (all: the whole model)."),
        PeftMethod(
            "freeze_encoder", "Prompt encoder and mask decoder only; image encoder frozen.", uses_blocks=False
        ),
        SelectiveTuning("ln_tune", "LayerNorm weights and biases (norm1, norm2) of the blocks.", pattern="norm"),
        SelectiveTuning("bias_tune", "All biases inside the blocks.", pattern="bias"),
        SelectiveTuning("attn_tune", "All attention parameters (qkv, proj, relative positions).", pattern="attn"),
        SSF("ssf", "Per-channel scale and shift after qkv, proj, lin1, lin2, norm1, norm2 (and patch embedding)."),
        FacT("fact", "Factorised low-rank update of q and v: V S U x.", defaults={"rank": 16, "dropout": 0.1}),
        LoRA("lora", "Low-rank update B A x of q and v (options: k, mlp).", defaults=_LORA_DEFAULTS),
        AdaptFormer(
            "adaptformer",
            "Bottleneck adapter parallel to the MLP, scaled by a learnable scalar.",
            defaults={"projection_size": 64, "dropout": 0.0},
            mergeable=False,
        ),
        DecoderLoRA(
            "decoder_lora",
            "LoRA in the mask decoder's attention; image encoder frozen (embeddings stay valid).",
            defaults={"rank": 16, "alpha": None, "targets": ("q", "v")},
            uses_blocks=False,
            trains_decoder=False,
        ),
    )
}


def get_method(name: str) -> PeftMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownMethodError(
            f"Unknown PEFT method {name!r}. This version of napari-sam-peft knows: {', '.join(METHODS)}. "
            "If an adapter file names it, it was written by a newer version: update napari-sam-peft."
        ) from None
