"""The PEFT methods of the paper (and LoRA in the mask decoder), each registered in one call.

A method is a name, a description, its options class (``options.py``) and two functions:

- ``inject(target, options)``: which modules it wraps (``layers.py``) in the selected blocks of
  an :class:`~.target.EncoderTarget`, found through the encoder family's block layout;
- ``selects(name, target)``: which original parameters of the model train besides the prompt
  encoder and mask decoder (which every encoder method trains too, as in the paper).

The stem (patch embedding; for full finetuning also the position embedding and neck) is
adapted only when every block is selected, so ``full_ft`` on all blocks is the whole model and
``full_ft`` on blocks 6-11 is the paper's "late FT". To add a method: write its options class
and its ``inject``/``selects``, and call :func:`register_method` (docs/peft.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import nn

from ..errors import SamPeftError
from ..sam.registry import image_encoder_of
from .layers import FacTQKV, LoRALinear, ParallelAdapter, PeftWrapper, ScaleShift
from .options import AdaptFormerOptions, DecoderLoraOptions, FactOptions, LoraOptions, MethodOptions
from .target import ENCODER, EncoderTarget, parent_and_attribute

__all__ = ["METHODS", "PeftMethod", "Replacement", "UnknownMethodError", "get_method", "register_method"]


class UnknownMethodError(SamPeftError):
    """A method or preset name this version does not know."""


#: (parent module, attribute name, original module, wrapper)
Replacement = tuple[nn.Module, str, nn.Module, PeftWrapper]
Inject = Callable[[EncoderTarget, Any], list[Replacement]]
Selects = Callable[[str, EncoderTarget], bool]


def _inject_nothing(target: EncoderTarget, options: Any) -> list[Replacement]:
    return []


def _select_nothing(name: str, target: EncoderTarget) -> bool:
    return False


@dataclass(frozen=True)
class PeftMethod:
    """A registered method. Make one with :func:`register_method`."""

    name: str
    description: str
    options_class: type[MethodOptions] = MethodOptions
    inject: Inject = _inject_nothing
    selects: Selects = _select_nothing
    uses_blocks: bool = True
    trains_decoder: bool = True
    mergeable: bool = True

    def options(self, given: Mapping[str, Any] | MethodOptions | None = None) -> MethodOptions:
        """This method's options: the defaults with ``given`` in their place.

        Raises
        ------
        InvalidOptionError
            For an option the method does not have, or a bad value.
        """
        if type(given) is self.options_class:
            return given
        if isinstance(given, MethodOptions):  # another method's options: only shared names carry over
            given = given.to_dict()
        return self.options_class.build(self.name, given)

    @property
    def trains_added_only(self) -> bool:
        """Whether the method's own training is of tensors it adds (zero or identity at the start),
        with no pretrained encoder weight selected; such tensors take a larger learning rate."""
        return self.inject is not _inject_nothing and self.selects is _select_nothing

    def selects_base(self, name: str, target: EncoderTarget) -> bool:
        """Whether an original (not added) parameter of SAM, named as in plain SAM, trains."""
        return (self.trains_decoder and name.startswith(target.decoder_prefixes)) or self.selects(name, target)


METHODS: dict[str, PeftMethod] = {}


def register_method(
    name: str,
    description: str,
    options: type[MethodOptions] = MethodOptions,
    *,
    inject: Inject = _inject_nothing,
    selects: Selects = _select_nothing,
    uses_blocks: bool = True,
    trains_decoder: bool = True,
    mergeable: bool = True,
) -> PeftMethod:
    """Add a method to :data:`METHODS` (see the module docstring) and return it."""
    method = PeftMethod(name, description, options, inject, selects, uses_blocks, trains_decoder, mergeable)
    METHODS[name] = method
    return method


def get_method(name: str) -> PeftMethod:
    """The registered method ``name``.

    Raises
    ------
    UnknownMethodError
        For a name this version does not know (the message says to update if a file names it).
    """
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownMethodError(
            f"Unknown PEFT method {name!r}. This version of napari-sam-peft knows: {', '.join(METHODS)}. "
            "If an adapter file names it, it was written by a newer version: update napari-sam-peft."
        ) from None


def _wrap(root: nn.Module, path: str, make: Callable[[Any], PeftWrapper], out: list[Replacement]) -> None:
    """Replace the module at ``path`` (relative to ``root``) by ``make(module)``."""
    parent, attr = parent_and_attribute(root, path)
    original = getattr(parent, attr)
    wrapper = make(original)
    setattr(parent, attr, wrapper)
    out.append((parent, attr, original, wrapper))


def _full_ft(name: str, target: EncoderTarget) -> bool:
    return target.in_selected_block(name) or (name.startswith(ENCODER) and target.all_blocks)


def _norms(name: str, target: EncoderTarget) -> bool:
    return target.in_selected_part(name, target.layout.norms)


def _biases(name: str, target: EncoderTarget) -> bool:
    return target.in_selected_block(name) and name.endswith(".bias")


def _attention(name: str, target: EncoderTarget) -> bool:
    return target.in_selected_part(name, (target.layout.attention,))


def _inject_lora(target: EncoderTarget, options: LoraOptions) -> list[Replacement]:
    layout, done = target.layout, list[Replacement]()
    rank, alpha = options.rank, options.scale_alpha
    attn_parts = tuple(p for p in ("q", "k", "v") if p in options.targets)
    for block in target.selected_blocks():
        if attn_parts:
            groups = target.qkv_groups(block.get_submodule(layout.qkv))
            _wrap(
                block,
                layout.qkv,
                partial(LoRALinear, rank=rank, alpha=alpha, parts=attn_parts, groups=groups),
                done,
            )
        if "mlp" in options.targets:
            for path in layout.mlp_linears:
                _wrap(block, path, partial(LoRALinear, rank=rank, alpha=alpha), done)
    return done


def _inject_decoder_lora(target: EncoderTarget, options: DecoderLoraOptions) -> list[Replacement]:
    """LoRA inside the mask decoder's two-way transformer: the same for every encoder family."""
    done: list[Replacement] = []
    make = partial(LoRALinear, rank=options.rank, alpha=options.scale_alpha)
    for module in list(target.mask_decoder.get_submodule("transformer").modules()):
        if all(hasattr(module, f"{p}_proj") for p in ("q", "k", "v", "out")):
            for part in ("q", "k", "v", "out"):
                if part in options.targets:
                    _wrap(module, f"{part}_proj", make, done)
    return done


def _inject_fact(target: EncoderTarget, options: FactOptions) -> list[Replacement]:
    done: list[Replacement] = []
    for block in target.selected_blocks():
        groups = target.qkv_groups(block.get_submodule(target.layout.qkv))
        make = partial(FacTQKV, rank=options.rank, dropout=options.dropout, groups=groups)
        _wrap(block, target.layout.qkv, make, done)
    return done


def _scale_shift(module: Any) -> ScaleShift:
    channels = module.out_features if isinstance(module, nn.Linear) else module.normalized_shape[0]
    return ScaleShift(module, channels)


def _scale_shift_channels_first(module: Any) -> ScaleShift:
    # a convolution's or BatchNorm's (N, C, H, W) output
    channels = module.out_channels if isinstance(module, nn.Conv2d) else module.num_features
    return ScaleShift(module, channels, channel_dim=1)


def _inject_ssf(target: EncoderTarget, options: MethodOptions) -> list[Replacement]:
    done: list[Replacement] = []
    layout = target.layout
    if target.all_blocks and target.family.stem is not None:
        _wrap(image_encoder_of(target.sam), target.family.stem, _scale_shift_channels_first, done)
    for block in target.selected_blocks():
        for path in (layout.qkv, layout.attention_out, *layout.mlp_linears, *layout.norms):
            _wrap(block, path, _scale_shift, done)
    return done


def _inject_adaptformer(target: EncoderTarget, options: AdaptFormerOptions) -> list[Replacement]:
    done: list[Replacement] = []
    layout = target.layout
    for block in target.selected_blocks():
        first: Any = block.get_submodule(layout.mlp_linears[0])
        dim = int(first.in_features)
        make = partial(ParallelAdapter, dim=dim, projection_size=options.projection_size, dropout=options.dropout)
        _wrap(block, layout.mlp, make, done)
    return done


register_method("full_ft", "Full finetuning of the selected blocks (all: the whole model).", selects=_full_ft)
register_method("freeze_encoder", "Prompt encoder and mask decoder only; image encoder frozen.", uses_blocks=False)
register_method("ln_tune", "LayerNorm weights and biases (norm1, norm2) of the blocks.", selects=_norms)
register_method("bias_tune", "All biases inside the blocks.", selects=_biases)
register_method("attn_tune", "All attention parameters (qkv, proj, relative positions).", selects=_attention)
register_method(
    "ssf",
    "Per-channel scale and shift after qkv, proj, lin1, lin2, norm1, norm2 (and patch embedding).",
    inject=_inject_ssf,
)
register_method("fact", "Factorised low-rank update of q and v: V S U x.", FactOptions, inject=_inject_fact)
register_method("lora", "Low-rank update B A x of q and v (options: k, mlp).", LoraOptions, inject=_inject_lora)
register_method(
    "adaptformer",
    "Bottleneck adapter parallel to the MLP, scaled by a learnable scalar.",
    AdaptFormerOptions,
    inject=_inject_adaptformer,
    mergeable=False,
)
register_method(
    "decoder_lora",
    "LoRA in the mask decoder's attention; image encoder frozen (embeddings stay valid).",
    DecoderLoraOptions,
    inject=_inject_decoder_lora,
    uses_blocks=False,
    trains_decoder=False,
)
