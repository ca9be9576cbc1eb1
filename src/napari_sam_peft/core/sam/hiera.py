"""SAM 2.1's Hiera image encoder as an encoder family: micro_sam's ``hvit_t``, ``hvit_s``, ``hvit_b``
and ``hvit_l`` (SAM 2.1 Hiera tiny, small, base+ and large) and a tiny model for tests.

A :class:`~.hiera_architecture.HieraArchitecture` holds what the tensor shapes and Meta's
configuration files say about a SAM 2.1 model; ``sam2_model.py`` builds the model (Meta's
``SAM2Base``) from the ``sam2`` package's own SAM 2.1 configuration with these fields in place.

Blocks: the Hiera trunk's ``MultiScaleBlock``s, block 0 first. Hiera has four stages at 1/4, 1/8,
1/16 and 1/32 of the input (tiny: 1 + 2 + 7 + 2 blocks). The first block of stages 2-4 pools its
queries and widens the channels (a *transition* block: its qkv maps ``dim`` to ``3 * dim_out``).
``late`` (the second half) is blocks 6-11 of hvit_t: the last four blocks of stage 3 and stage 4.
The mask decoder reads the outputs of stages 1 and 2 directly (SAM 2's high-resolution
features), so an adapter on late blocks changes only the 64 x 64 embedding.

Stages (the frozen-prefix cache's unit): the patch and position embedding, each block, the neck; a
stage's input carries the stage outputs finished before it (``hiera_stages``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .encoder_family import BlockLayout, EncoderCost, StageCost
from .hiera_architecture import HieraArchitecture, infer_hiera_architecture
from .vit import VIT, VIT_B, sam_model_input


def _hiera(architecture: Any) -> HieraArchitecture:
    if not isinstance(architecture, HieraArchitecture):
        raise TypeError(f"The Hiera family cannot use a {type(architecture).__name__}.")
    return architecture


class HieraFamily:
    """SAM 2.1's Hiera encoder: ``sam2``'s ``ImageEncoder``, a ``Hiera`` trunk and an FPN neck."""

    name = "hiera"
    layout = BlockLayout(
        attention="attn",
        qkv="attn.qkv",
        attention_out="attn.proj",
        mlp="mlp",
        mlp_linears=("mlp.layers.0", "mlp.layers.1"),
        norms=("norm1", "norm2"),
    )
    stem = "trunk.patch_embed.proj"
    decoder_prefixes = ("sam_prompt_encoder.", "sam_mask_decoder.")
    #: the decoder's high-resolution projections run in the neck stage (``sam2_as_sam``): a run that trains
    #: them (``freeze_encoder`` trains the whole decoder) runs the neck at each step, from the kept carry
    last_stage_runs = ("sam_mask_decoder.conv_s0", "sam_mask_decoder.conv_s1")

    def owns(self, encoder: nn.Module) -> bool:
        """Whether ``encoder`` is SAM 2's ``ImageEncoder`` (one with a Hiera trunk)."""
        return hasattr(encoder, "trunk") and any(c.__module__.startswith("sam2.") for c in type(encoder).__mro__)

    def recognises(self, state: Mapping[str, torch.Tensor]) -> bool:
        """Whether the state dict has ``image_encoder.trunk`` tensors."""
        return any(k.startswith("image_encoder.trunk.") for k in state)

    def architecture_from_dict(self, values: Mapping[str, Any]) -> HieraArchitecture:
        """A :class:`HieraArchitecture` from its JSON fields."""
        return HieraArchitecture.from_dict(values)

    def infer_architecture(self, state: Mapping[str, torch.Tensor], name: str) -> HieraArchitecture:
        """See :func:`infer_hiera_architecture`."""
        return infer_hiera_architecture(state, name)

    def build_encoder(self, architecture: Any) -> nn.Module:
        """The image encoder of :meth:`build_model`'s model."""
        return self.build_model(architecture).get_submodule("image_encoder")

    def build_model(self, architecture: Any) -> nn.Module:
        """An untrained ``SAM2Base`` (see ``sam2_model.build_sam2_model``), on the current default device."""
        from .sam2_model import build_sam2_model

        return build_sam2_model(_hiera(architecture))

    def mask_decoder(self, model: nn.Module) -> nn.Module:
        """``sam_mask_decoder``."""
        return model.get_submodule("sam_mask_decoder")

    def global_blocks(self, architecture: Any) -> tuple[int, ...]:
        """``global_att_blocks``; the others attend within their stage's window."""
        return _hiera(architecture).global_att_blocks

    def block_paths(self, encoder: nn.Module) -> list[str]:
        """``trunk.blocks.0`` to ``trunk.blocks.{depth-1}``."""
        return [f"trunk.blocks.{i}" for i, _ in enumerate(encoder.get_submodule("trunk.blocks").children())]

    def qkv_groups(self, qkv: nn.Module) -> int:
        """1: q, k and v are consecutive thirds of the output (each ``dim_out`` wide)."""
        return 1

    def stages(self, encoder: nn.Module) -> list[tuple[str, ...]]:
        """The patch and position embeddings, each block, the neck."""
        stem = ("trunk.patch_embed", "trunk.pos_embed", "trunk.pos_embed_window")
        return [stem, *[(path,) for path in self.block_paths(encoder)], ("neck",)]

    def stage_functions(self, encoder: nn.Module) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """See ``hiera_stages``: a stage's input carries the stage outputs finished before it."""
        from .hiera_stages import stage_functions

        return stage_functions(encoder)

    def stage_entry(
        self, encoder: nn.Module, stage: int
    ) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
        """Not for Hiera: a block's input alone is not its stage's input (see :meth:`stage_input_hooks`).

        Raises
        ------
        NotImplementedError
            Always.
        """
        raise NotImplementedError("Hiera's stage inputs are captured by stage_input_hooks")

    def stage_input_hooks(
        self, encoder: nn.Module, stage: int, keep: Callable[[torch.Tensor], None]
    ) -> list[RemovableHandle]:
        """Hooks that hand ``keep`` stage ``stage``'s input while the encoder runs whole (``hiera_stages``)."""
        from .hiera_stages import stage_input_hooks

        return stage_input_hooks(encoder, stage, keep)

    def input_size(self, encoder: nn.Module) -> int:
        """The square side SAM 2 resizes every image to (1024 for the four sizes): Hiera interpolates its
        position embedding to any input, so ``build_sam2_model`` records the model's on the encoder."""
        return int(encoder.image_size)  # type: ignore[arg-type]

    def model_input(self, sam: nn.Module, image: np.ndarray) -> torch.Tensor:
        """SAM's preprocessing: the longest side resized to the input size, normalised, padded (micro_sam's
        dev branch configures SAM 2's image predictor the same way, ``configure_image_predictor``)."""
        return sam_model_input(sam, image, self.input_size(sam.get_submodule("image_encoder")))

    def encoder_cost(self, architecture: Any) -> EncoderCost:
        """Windowed or global attention, qkv, projection and MLP per block at its stage's grid; the neck's
        1x1 convolutions."""
        a = _hiera(architecture)
        stages, largest = [StageCost("stem", 0.0)], 0.0
        side, heads = a.img_size // 4, a.num_heads
        ends = set(np.cumsum(a.stages)[:-1].tolist())
        dim = a.embed_dim
        for index in range(a.depth):
            stage = a.stage_of_block(index)
            dim_out = a.stage_dims[stage]
            if index in ends:  # a transition block: its queries are pooled to the next stage's grid
                side, heads = side // 2, heads * 2
            tokens = side**2
            window = a.window_spec[stage]
            attended = tokens if index in a.global_att_blocks else min(tokens, window**2)
            shortcut = dim * dim_out if dim != dim_out else 0
            linear = 2 * tokens * (3 * dim * dim_out + dim_out**2 + 8 * dim_out**2 + shortcut)  # qkv, proj, MLP
            attention = 4 * tokens * attended * dim_out
            stages.append(StageCost("block", linear, attention, tokens * dim_out * 16 + tokens * attended * heads))
            if attended == tokens:
                largest = max(largest, 3.0 * heads * tokens**2)
            dim = dim_out
        neck = sum(2 * (a.img_size // 4 // 2**i) ** 2 * c * a.prompt_embed_dim for i, c in enumerate(a.stage_dims))
        stages.append(StageCost("neck", float(neck)))
        return EncoderCost(tuple(stages), largest)

    def relative_compute(self, architecture: Any) -> float:
        """The encoder's forward operations relative to SAM vit_b's."""

        def total(cost: EncoderCost) -> float:
            return sum(s.flops + s.attention_flops for s in cost.stages)

        return total(self.encoder_cost(architecture)) / total(VIT.encoder_cost(VIT_B))


#: The family object: ``registry.FAMILIES["hiera"]``.
HIERA = HieraFamily()
