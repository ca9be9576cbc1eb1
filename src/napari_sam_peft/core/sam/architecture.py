"""SAM architectures: the named sizes, a builder, and inference from a state dict.

A :class:`SamArchitecture` says everything needed to rebuild a SAM model from
``segment_anything.modeling`` classes. The named sizes (vit_b, vit_l, vit_h) match
``segment_anything.build_sam``; ``demo`` and ``tiny`` are small models of the same
architecture for the bundled demo and for tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import partial

import torch
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

from ..errors import InvalidCheckpointError


@dataclass(frozen=True)
class SamArchitecture:
    """The hyper-parameters of a SAM model built from ``segment_anything.modeling``."""

    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    name: str = field(default="custom", compare=False)

    @property
    def embedding_size(self) -> int:
        """Side length of the image embedding grid (64 for the original SAM)."""
        return self.img_size // self.patch_size

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SamArchitecture:
        values = json.loads(text)
        values["global_attn_indexes"] = tuple(values.get("global_attn_indexes", ()))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})


VIT_B = SamArchitecture(name="vit_b")
VIT_L = SamArchitecture(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23), name="vit_l")
VIT_H = SamArchitecture(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31), name="vit_h")
#: The bundled demo model: SAM's architecture at a size that trains in minutes on a CPU.
DEMO = SamArchitecture(
    img_size=256,
    patch_size=8,
    embed_dim=128,
    depth=4,
    num_heads=4,
    global_attn_indexes=(1, 3),
    window_size=8,
    prompt_embed_dim=128,
    decoder_mlp_dim=512,
    decoder_num_heads=4,
    iou_head_hidden_dim=128,
    name="demo",
)
#: A model for unit tests: a forward pass takes milliseconds.
TINY = SamArchitecture(
    img_size=64,
    patch_size=8,
    embed_dim=32,
    depth=4,
    num_heads=2,
    global_attn_indexes=(1, 3),
    window_size=4,
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32,
    name="tiny",
)

NAMED_ARCHITECTURES: dict[str, SamArchitecture] = {a.name: a for a in (VIT_B, VIT_L, VIT_H, DEMO, TINY)}


def architecture_for_model_name(name: str) -> SamArchitecture:
    """The architecture of a micro_sam registry name such as ``vit_b_lm`` (its first five letters)."""
    key = name[:5]
    if key in ("vit_b", "vit_l", "vit_h"):
        return NAMED_ARCHITECTURES[key]
    raise InvalidCheckpointError(
        f"Model {name!r} has an architecture napari-sam-peft does not support "
        "(vit_t / MobileSAM models use a different encoder). Choose a vit_b, vit_l or vit_h model."
    )


def build_sam(arch: SamArchitecture, device: str | torch.device | None = None) -> Sam:
    """Build an untrained SAM model of the given architecture, in eval mode.

    ``device="meta"`` builds it without allocating memory, which is how tests count the
    parameters of vit_b in milliseconds.
    """
    context = torch.device(device) if device is not None else torch.device("cpu")
    with context:
        sam = Sam(
            image_encoder=ImageEncoderViT(
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
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=arch.prompt_embed_dim,
                image_embedding_size=(arch.embedding_size, arch.embedding_size),
                input_image_size=(arch.img_size, arch.img_size),
                mask_in_chans=16,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=arch.num_multimask_outputs,
                transformer=TwoWayTransformer(
                    depth=arch.decoder_depth,
                    embedding_dim=arch.prompt_embed_dim,
                    mlp_dim=arch.decoder_mlp_dim,
                    num_heads=arch.decoder_num_heads,
                ),
                transformer_dim=arch.prompt_embed_dim,
                iou_head_depth=3,
                iou_head_hidden_dim=arch.iou_head_hidden_dim,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
    return sam.eval()


_BLOCK_KEY = re.compile(r"^image_encoder\.blocks\.(\d+)\.")
_DECODER_LAYER_KEY = re.compile(r"^mask_decoder\.transformer\.layers\.(\d+)\.")


def infer_architecture(state: Mapping[str, torch.Tensor], name: str = "custom") -> SamArchitecture:
    """Read the architecture off the tensor shapes of a SAM state dict.

    The decoder's number of attention heads cannot be seen in the shapes; it is taken
    to be the original SAM's value for the original sizes and otherwise 8.

    Raises
    ------
    InvalidCheckpointError
        If the state dict is not that of a SAM model with a ViT image encoder.
    """
    try:
        patch = state["image_encoder.patch_embed.proj.weight"]
        pos = state["image_encoder.pos_embed"]
        neck = state["image_encoder.neck.0.weight"]
        mask_tokens = state["mask_decoder.mask_tokens.weight"]
        iou_hidden = state["mask_decoder.iou_prediction_head.layers.0.weight"]
        decoder_mlp = state["mask_decoder.transformer.layers.0.mlp.lin1.weight"]
        lin1 = state["image_encoder.blocks.0.mlp.lin1.weight"]
    except KeyError as err:
        raise InvalidCheckpointError(
            f"This file is not a SAM checkpoint with a ViT image encoder: it has no tensor {err}. "
            "Choose a segment-anything or micro_sam checkpoint (vit_b, vit_l, vit_h)."
        ) from None

    embed_dim, _, patch_size, _ = patch.shape
    grid = pos.shape[1]
    blocks = sorted({int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))})
    depth = len(blocks)
    rel_pos = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"] for i in blocks]
    head_dim = rel_pos[0].shape[1]
    global_idx = tuple(i for i, r in zip(blocks, rel_pos, strict=True) if r.shape[0] == 2 * grid - 1)
    windowed = [r.shape[0] for r in rel_pos if r.shape[0] != 2 * grid - 1]
    window_size = (windowed[0] + 1) // 2 if windowed else 0
    decoder_depth = len({int(m.group(1)) for k in state if (m := _DECODER_LAYER_KEY.match(k))})
    inferred = SamArchitecture(
        img_size=grid * patch_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // head_dim,
        global_attn_indexes=global_idx,
        window_size=window_size,
        mlp_ratio=lin1.shape[0] / embed_dim,
        prompt_embed_dim=neck.shape[0],
        decoder_depth=decoder_depth,
        decoder_mlp_dim=decoder_mlp.shape[0],
        decoder_num_heads=8,
        iou_head_hidden_dim=iou_hidden.shape[0],
        num_multimask_outputs=mask_tokens.shape[0] - 1,
        name=name,
    )
    for known in (VIT_B, VIT_L, VIT_H):
        if inferred == known:
            return SamArchitecture(**{**asdict(known), "name": known.name})
    return inferred
