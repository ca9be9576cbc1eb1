"""The encoder family protocol: what napari-sam-peft needs to know about one kind of SAM image encoder.

Every SAM variant shares the prompt encoder and mask decoder; the image encoder differs (SAM's
ViT-B/L/H, MobileSAM's and LiteMedSAM's TinyViT). An *encoder family* is one module that
describes one kind of image encoder through one object implementing :class:`EncoderFamily`,
listed in ``registry.py``. Everything that depends on the encoder asks the family of a model
(``registry.family_of(sam)``) or of an architecture (``registry.family_for(architecture)``):

- how to build the encoder and read its hyper-parameters off a checkpoint;
- its *stages* in order (the frozen-prefix cache runs stages ``0..k-1`` once per image);
- its adaptable *blocks* (what a block selection such as ``"late"`` counts) and, inside a
  block, the attention and MLP layers the PEFT methods wrap (:class:`BlockLayout`);
- its input size and preprocessing;
- the cost figures of the pre-run estimate.

``vit.py`` is the first family; docs/add_encoder_family.md says how to add another.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Architecture:
    """Base of every family's architecture: a frozen dataclass of hyper-parameters.

    These fields size SAM's prompt encoder and mask decoder, the same in every family; a family's
    subclass adds its encoder's fields, sets :attr:`family`, and gives :attr:`depth` and
    :attr:`embedding_size` (as fields or properties).
    """

    #: the name of the encoder family (a key of ``registry.FAMILIES``)
    family: ClassVar[str] = ""

    img_size: int = 1024
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    name: str = field(default="custom", compare=False)

    @property
    def depth(self) -> int:
        """How many adaptable blocks the encoder has (what block selections count)."""
        raise NotImplementedError

    @property
    def embedding_size(self) -> int:
        """Side length of the image embedding grid."""
        raise NotImplementedError

    @property
    def pixel_mean(self) -> tuple[float, float, float]:
        """What ``Sam.preprocess`` subtracts from the 0-255 RGB input (SAM's ImageNet mean)."""
        return (123.675, 116.28, 103.53)

    @property
    def pixel_std(self) -> tuple[float, float, float]:
        """What ``Sam.preprocess`` divides by (SAM's ImageNet deviation)."""
        return (58.395, 57.12, 57.375)

    def block_summary(self) -> str:
        """A line on how the adaptable blocks lie in the encoder, where the count alone does not say it."""
        return ""

    def weight_shapes(self) -> dict[str, Any]:
        """The fields the tensor shapes of its weights show (all but the name and the decoder's head
        count, which only a file's record can say)."""
        values = asdict(self)
        del values["name"], values["decoder_num_heads"]
        return values

    def to_json(self) -> str:
        """The fields and the family as JSON with sorted keys (what model and adapter files record)."""
        return json.dumps({**asdict(self), "family": self.family}, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """The architecture from its JSON fields (lists become tuples; unknown fields are ignored)."""
        known = {f.name for f in fields(cls)}
        kept: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        return cls(**kept)


@dataclass(frozen=True)
class BlockLayout:
    """Where the PEFT methods find their layers inside one adaptable block.

    Paths are module names relative to the block (``"attn.qkv"``).
    """

    #: the attention module: ``attn_tune`` trains every parameter under it
    attention: str
    #: the fused q, k, v projection (a Linear): LoRA's q/k/v targets, FacT
    qkv: str
    #: the attention's output projection (a Linear): SSF
    attention_out: str
    #: the MLP module: AdaptFormer runs a bottleneck beside it (its input width = first MLP linear's)
    mlp: str
    #: the MLP's Linears: LoRA's ``mlp`` target, SSF
    mlp_linears: tuple[str, ...]
    #: the block's LayerNorms: ``ln_tune``, SSF
    norms: tuple[str, ...]


@dataclass(frozen=True)
class StageCost:
    """The forward cost of one encoder stage, for the pre-run estimate (``training/estimate.py``).

    ``kind`` is ``"stem"`` (not counted: it runs once per image unless every block trains, and is
    cheap), ``"block"`` (an attention block) or ``"neck"``.
    """

    kind: str
    #: floating-point operations of its weight layers (their backward grows with what trains)
    flops: float
    #: floating-point operations of the attention maps (their backward costs 2x)
    attention_flops: float = 0.0
    #: floats its backward pass keeps
    activation_floats: float = 0.0


@dataclass(frozen=True)
class EncoderCost:
    """Per-stage costs (in stage order) and the memory of running the frozen stages once."""

    stages: tuple[StageCost, ...]
    #: floats alive while the frozen stages run once per image (the largest attention maps)
    frozen_pass_floats: float


_DECODER_LAYER_KEY = re.compile(r"^mask_decoder\.transformer\.layers\.(\d+)\.")


def decoder_fields(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The sizes of SAM's mask decoder read off a state dict: the same in every encoder family.

    The decoder's number of attention heads cannot be seen in the shapes: 8 (a model file
    written by ``save_model`` records the true value).

    Raises
    ------
    KeyError
        Naming a mask-decoder tensor the state dict lacks.
    """
    mask_tokens = state["mask_decoder.mask_tokens.weight"]
    iou_hidden = state["mask_decoder.iou_prediction_head.layers.0.weight"]
    decoder_mlp = state["mask_decoder.transformer.layers.0.mlp.lin1.weight"]
    return {
        "decoder_depth": len({int(m.group(1)) for k in state if (m := _DECODER_LAYER_KEY.match(k))}),
        "decoder_mlp_dim": decoder_mlp.shape[0],
        "decoder_num_heads": 8,
        "iou_head_hidden_dim": iou_hidden.shape[0],
        "num_multimask_outputs": mask_tokens.shape[0] - 1,
    }


class EncoderFamily(Protocol):
    """One kind of SAM image encoder. Implemented by one object per family module (``vit.VIT``)."""

    @property
    def name(self) -> str:
        """The family's name, as architectures record it (``"vit"``)."""
        ...

    @property
    def layout(self) -> BlockLayout:
        """Where the PEFT methods find their layers inside a block."""
        ...

    @property
    def stem(self) -> str | None:
        """The encoder's patch-embedding convolution (path relative to the encoder), which SSF
        scales when every block is selected; ``None`` when the family has none to scale."""
        ...

    def owns(self, encoder: nn.Module) -> bool:
        """Whether a live image encoder belongs to this family."""
        ...

    def recognises(self, state: Mapping[str, torch.Tensor]) -> bool:
        """Whether a SAM state dict has this family's image encoder (a cheap look at its keys)."""
        ...

    def architecture_from_dict(self, values: Mapping[str, Any]) -> Architecture:
        """The architecture from its JSON fields (unknown fields ignored)."""
        ...

    def infer_architecture(self, state: Mapping[str, torch.Tensor], name: str) -> Architecture:
        """Read the architecture off the tensor shapes of a state dict.

        Raises ``InvalidCheckpointError`` saying which tensor is missing.
        """
        ...

    @property
    def decoder_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes of the model's prompt encoder and mask decoder (SAM 1:
        ``prompt_encoder.``, ``mask_decoder.``; SAM 2.1: ``sam_prompt_encoder.``, ``sam_mask_decoder.``)."""
        ...

    def build_encoder(self, architecture: Architecture) -> nn.Module:
        """An untrained image encoder: input (N, 3, S, S)."""
        ...

    def build_model(self, architecture: Architecture) -> nn.Module:
        """An untrained whole model on the current default device: ``Sam`` (SAM 1) or ``SAM2Base`` (SAM 2.1)."""
        ...

    def mask_decoder(self, model: nn.Module) -> nn.Module:
        """The model's mask decoder (SAM's ``mask_decoder``, SAM 2's ``sam_mask_decoder``)."""
        ...

    def global_blocks(self, architecture: Architecture) -> tuple[int, ...]:
        """The blocks that attend over the whole image (the others attend within windows)."""
        ...

    def block_paths(self, encoder: nn.Module) -> list[str]:
        """Module paths (relative to the encoder) of the adaptable blocks, block 0 first."""
        ...

    def qkv_groups(self, qkv: nn.Module) -> int:
        """How q, k and v lie in a block's fused qkv output: it is ``groups`` equal groups, each
        holding q, k, v as consecutive thirds (SAM's ViT: 1; TinyViT: one group per head)."""
        ...

    def stages(self, encoder: nn.Module) -> list[tuple[str, ...]]:
        """Each stage's module and parameter paths (relative to the encoder), in running order."""
        ...

    def stage_functions(self, encoder: nn.Module) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """One function per stage; applied in order to the preprocessed image they equal ``encoder(x)``."""
        ...

    def stage_entry(
        self, encoder: nn.Module, stage: int
    ) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
        """The module that ``encoder(x)`` calls first in ``stage``, and how its first input becomes
        that stage's input as :meth:`stage_functions` take it (for capturing it with a hook)."""
        ...

    def input_size(self, encoder: nn.Module) -> int:
        """Side length of the square input the encoder takes."""
        ...

    def model_input(self, sam: nn.Module, image: np.ndarray) -> torch.Tensor:
        """An image (H, W) or (H, W, 3) as the encoder's normalised, resized, padded input (1, 3, S, S)."""
        ...

    def encoder_cost(self, architecture: Architecture) -> EncoderCost:
        """Per-stage forward costs for the pre-run estimate."""
        ...

    def relative_compute(self, architecture: Architecture) -> float:
        """The encoder's compute relative to SAM vit_b's (1.0), for the preset recommender."""
        ...
