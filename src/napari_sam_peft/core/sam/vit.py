"""SAM's ViT image encoder as an encoder family: ViT-B/L/H and the small demo and test models.

A :class:`VitArchitecture` says everything needed to rebuild a SAM model with a ViT encoder from
``segment_anything.modeling`` classes. The named sizes (vit_b, vit_l, vit_h) match
``segment_anything.build_sam``; ``demo`` and ``tiny`` are small models of the same architecture
for the bundled demo and for tests. :data:`VIT` is the family object the rest of the package asks.

Stages: the patch embedding (with the position embedding), each transformer block, the neck.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT, Sam
from torch import nn

from ..errors import InvalidCheckpointError
from .encoder_family import Architecture, BlockLayout, EncoderCost, StageCost, decoder_fields
from .internals import to_image
from .sam1_model import SamOneModel
from .vit_attention import use_chunked_attention


@dataclass(frozen=True)
class VitArchitecture(Architecture):
    """The hyper-parameters of a SAM model with a ViT image encoder (``segment_anything.modeling``)."""

    family: ClassVar[str] = "vit"

    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    mlp_ratio: float = 4.0

    @property
    def embedding_size(self) -> int:
        """Side length of the image embedding grid (64 for the original SAM)."""
        return self.img_size // self.patch_size

    def to_json(self) -> str:
        """The fields as JSON with sorted keys and no ``family``: the same text as before encoder
        families existed (a record without ``family`` is a ViT)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VitArchitecture:
        """The architecture :meth:`to_json` wrote; unknown fields are ignored."""
        return cls.from_dict(json.loads(text))


def _small_vit(
    name: str, img_size: int, width: int, num_heads: int, window_size: int, decoder_mlp_dim: int
) -> VitArchitecture:
    """SAM's architecture at a small size: 4 blocks of 8 px patches, global attention in blocks 1 and 3."""
    return VitArchitecture(
        img_size=img_size,
        patch_size=8,
        embed_dim=width,
        depth=4,
        num_heads=num_heads,
        global_attn_indexes=(1, 3),
        window_size=window_size,
        prompt_embed_dim=width,
        decoder_mlp_dim=decoder_mlp_dim,
        decoder_num_heads=num_heads,
        iou_head_hidden_dim=width,
        name=name,
    )


VIT_B = VitArchitecture(name="vit_b")
VIT_L = VitArchitecture(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23), name="vit_l")
VIT_H = VitArchitecture(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31), name="vit_h")
#: The bundled demo model: SAM's architecture at a size that trains in minutes on a CPU.
DEMO = _small_vit("demo", img_size=256, width=128, num_heads=4, window_size=8, decoder_mlp_dim=512)
#: A model for unit tests: a forward pass takes milliseconds.
TINY = _small_vit("tiny", img_size=64, width=32, num_heads=2, window_size=4, decoder_mlp_dim=64)

_BLOCK_KEY = re.compile(r"^image_encoder\.blocks\.(\d+)\.")


def infer_vit_architecture(state: Mapping[str, torch.Tensor], name: str = "custom") -> VitArchitecture:
    """Read the architecture off the tensor shapes of a SAM state dict with a ViT encoder.

    The decoder's number of attention heads cannot be seen in the shapes; it is taken to be the
    original SAM's value for the original sizes and otherwise 8.

    Raises
    ------
    InvalidCheckpointError
        If the state dict is not that of a SAM model with a ViT image encoder.
    """
    try:
        patch = state["image_encoder.patch_embed.proj.weight"]
        pos = state["image_encoder.pos_embed"]
        neck = state["image_encoder.neck.0.weight"]
        decoder = decoder_fields(state)
        lin1 = state["image_encoder.blocks.0.mlp.lin1.weight"]
    except KeyError as err:
        raise InvalidCheckpointError(
            f"This file is not a SAM checkpoint with a ViT image encoder: it has no tensor {err}. "
            "Choose a segment-anything or micro_sam checkpoint (vit_b, vit_l, vit_h)."
        ) from None

    embed_dim, _, patch_size, _ = patch.shape
    grid = pos.shape[1]
    blocks = sorted({int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))})
    rel_pos = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"] for i in blocks]
    head_dim = rel_pos[0].shape[1]
    global_idx = tuple(i for i, r in zip(blocks, rel_pos, strict=True) if r.shape[0] == 2 * grid - 1)
    windowed = [r.shape[0] for r in rel_pos if r.shape[0] != 2 * grid - 1]
    inferred = VitArchitecture(
        img_size=grid * patch_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=len(blocks),
        num_heads=embed_dim // head_dim,
        global_attn_indexes=global_idx,
        window_size=(windowed[0] + 1) // 2 if windowed else 0,
        mlp_ratio=lin1.shape[0] / embed_dim,
        prompt_embed_dim=neck.shape[0],
        name=name,
        **decoder,
    )
    for known in (VIT_B, VIT_L, VIT_H):
        if inferred == known:
            return VitArchitecture(**{**asdict(known), "name": known.name})
    return inferred


def _vit(architecture: Any) -> VitArchitecture:
    if not isinstance(architecture, VitArchitecture):
        raise TypeError(f"The ViT family cannot use a {type(architecture).__name__}.")
    return architecture


class VitFamily(SamOneModel):
    """SAM's ViT encoder (``segment_anything.modeling.ImageEncoderViT``)."""

    name = "vit"
    layout = BlockLayout(
        attention="attn",
        qkv="attn.qkv",
        attention_out="attn.proj",
        mlp="mlp",
        mlp_linears=("mlp.lin1", "mlp.lin2"),
        norms=("norm1", "norm2"),
    )
    stem = "patch_embed.proj"

    def owns(self, encoder: nn.Module) -> bool:
        """Whether ``encoder`` is an ``ImageEncoderViT``."""
        return isinstance(encoder, ImageEncoderViT)

    def recognises(self, state: Mapping[str, torch.Tensor]) -> bool:
        """Whether the state dict has a position embedding or ``image_encoder.blocks.N`` tensors."""
        return "image_encoder.pos_embed" in state or any(_BLOCK_KEY.match(k) for k in state)

    def architecture_from_dict(self, values: Mapping[str, Any]) -> VitArchitecture:
        """A :class:`VitArchitecture` from its JSON fields."""
        return VitArchitecture.from_dict(values)

    def infer_architecture(self, state: Mapping[str, torch.Tensor], name: str) -> VitArchitecture:
        """See :func:`infer_vit_architecture`."""
        return infer_vit_architecture(state, name)

    def build_encoder(self, architecture: Any) -> ImageEncoderViT:
        """``segment_anything``'s ViT encoder, as ``build_sam`` makes it, with chunked global attention.

        :mod:`.vit_attention` computes the same attention without holding a global block's whole
        attention map (805 MB for vit_b at 1024 px, three times over).
        """
        arch = _vit(architecture)
        encoder = ImageEncoderViT(
            depth=arch.depth,
            embed_dim=arch.embed_dim,
            img_size=arch.img_size,
            mlp_ratio=arch.mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=arch.num_heads,
            patch_size=arch.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=arch.global_attn_indexes,
            window_size=arch.window_size,
            out_chans=arch.prompt_embed_dim,
        )
        return use_chunked_attention(encoder)

    def global_blocks(self, architecture: Any) -> tuple[int, ...]:
        """``global_attn_indexes``: the other blocks attend within ``window_size`` windows."""
        return _vit(architecture).global_attn_indexes

    def block_paths(self, encoder: ImageEncoderViT) -> list[str]:
        """``blocks.0`` to ``blocks.{depth-1}``."""
        return [f"blocks.{i}" for i in range(len(encoder.blocks))]

    def qkv_groups(self, qkv: nn.Module) -> int:
        """1: q, k and v are consecutive thirds of the output."""
        return 1

    def stages(self, encoder: ImageEncoderViT) -> list[tuple[str, ...]]:
        """The patch and position embedding, each block, the neck."""
        return [("patch_embed", "pos_embed"), *[(path,) for path in self.block_paths(encoder)], ("neck",)]

    def stage_functions(self, encoder: ImageEncoderViT) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """What ``ImageEncoderViT.forward`` does, one stage at a time (blocks take (N, H, W, C))."""

        def embed(x: torch.Tensor) -> torch.Tensor:
            x = encoder.patch_embed(x)
            return x + encoder.pos_embed if encoder.pos_embed is not None else x

        def neck(x: torch.Tensor) -> torch.Tensor:
            return encoder.neck(x.permute(0, 3, 1, 2))

        return [embed, *encoder.blocks, neck]

    def stage_entry(
        self, encoder: ImageEncoderViT, stage: int
    ) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
        """The patch embedding, a block, or the neck (whose input is channels-first)."""
        depth = len(encoder.blocks)
        if stage == 0:
            return encoder.patch_embed, _same
        if stage <= depth:
            return encoder.blocks[stage - 1], _same
        return encoder.neck, _channels_last

    def input_size(self, encoder: ImageEncoderViT) -> int:
        """``img_size`` (1024 for SAM)."""
        return int(encoder.img_size)

    def model_input(self, sam: Sam, image: np.ndarray) -> torch.Tensor:
        """See :func:`sam_model_input`."""
        return sam_model_input(sam, image, self.input_size(sam.image_encoder))

    def encoder_cost(self, architecture: Any) -> EncoderCost:
        """Windowed and global attention, qkv, projection and MLP per block; the neck's convolutions."""
        a = _vit(architecture)
        side = a.img_size // a.patch_size
        tokens, d, dim = side**2, a.embed_dim, a.prompt_embed_dim
        stages, global_blocks = [StageCost("stem", 0.0)], self.global_blocks(a)
        for index in range(a.depth):
            if a.window_size and index not in global_blocks:
                padded = (math.ceil(side / a.window_size) * a.window_size) ** 2  # windows pad the grid
                attended = a.window_size**2
            else:
                padded, attended = tokens, tokens
            linear = 2 * (4 * padded + 2 * a.mlp_ratio * tokens) * d * d  # qkv + projection, MLP
            attention = 4 * padded * attended * d  # q k^T and attention x v
            activations = tokens * d * 16 + padded * attended * a.num_heads
            stages.append(StageCost("block", linear, attention, activations))
        stages.append(StageCost("neck", 2 * tokens * (d * dim + dim * dim * 9)))
        # Running the frozen stages once per image holds three attention-sized tensors of a global block.
        return EncoderCost(tuple(stages), 3 * a.num_heads * tokens**2)

    def relative_compute(self, architecture: Any) -> float:
        """Width squared times depth, relative to vit_b."""
        a = _vit(architecture)  # vit_b ~ 1, vit_l ~ 3.5, vit_h ~ 7; the demo model far less
        return (a.embed_dim / VIT_B.embed_dim) ** 2 * a.depth / VIT_B.depth


def sam_model_input(sam: Sam, image: np.ndarray, size: int) -> torch.Tensor:
    """The same preprocessing as the annotator's embeddings (micro_sam's, then what
    ``SamPredictor.set_image`` does: longest side to ``size``, ``sam.preprocess``), so training
    sees what annotating saw."""
    from segment_anything.utils.transforms import ResizeLongestSide

    rgb = ResizeLongestSide(size).apply_image(to_image(image))
    tensor = torch.as_tensor(rgb, device=sam.device).permute(2, 0, 1)[None].float()
    return sam.preprocess(tensor)


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


#: The family object: ``registry.FAMILIES["vit"]``.
VIT = VitFamily()
