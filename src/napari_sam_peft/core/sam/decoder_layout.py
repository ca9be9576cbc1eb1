"""SAM's two-way transformer on image tokens laid out as it reads them, so its elementwise work is contiguous.

``segment_anything``'s ``TwoWayTransformer`` turns the (B, C, H, W) image embedding into tokens with
``flatten(2).permute(0, 2, 1)``: a (B, H*W, C) view whose channels are H*W elements apart. Every
addition of the positional encoding, every autocast cast and every layer norm over those keys then
walks memory with a large stride. In a training step on LiteMedSAM (64 x 64 embeddings, 5 objects,
bfloat16 on a 2-core AMD EPYC with AVX512-BF16), those strided copies and additions took 34% of the
decoder pass; ``torch.profiler`` showed ``aten::copy_`` and ``aten::add`` on (5, 4096, 256) at 9 ms
and 24 ms a call.

:class:`ContiguousTokensTransformer` hands the transformer its image embedding and positional
encoding in channels-last memory, where the same ``flatten(2).permute(0, 2, 1)`` is a contiguous
tensor: the same numbers (to float rounding), the same parameters and state-dict keys. One decoder
pass forward and backward (LiteMedSAM, 5 box prompts, 2 threads): float32 1154 -> 705 ms, bfloat16
622 -> 372 ms. ``build_sam`` swaps the class of the transformer of every model it builds;
:func:`use_plain_decoder` swaps it back (benchmarks run micro_sam's side with the decoder its users
get).
"""

from __future__ import annotations

import torch
from segment_anything.modeling.transformer import TwoWayTransformer
from torch import nn


class ContiguousTokensTransformer(TwoWayTransformer):
    """``segment_anything``'s ``TwoWayTransformer`` (same parameters) on channels-last image inputs."""

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two-way attention of ``TwoWayTransformer.forward``, its image tokens contiguous."""
        channels_last = torch.channels_last
        image_embedding = image_embedding.contiguous(memory_format=channels_last)
        image_pe = image_pe.contiguous(memory_format=channels_last)
        return super().forward(image_embedding, image_pe, point_embedding)


def use_contiguous_decoder(model: nn.Module) -> nn.Module:
    """Give every ``TwoWayTransformer`` of ``model`` contiguous image tokens (in place); returns ``model``."""
    for module in model.modules():
        if type(module) is TwoWayTransformer:
            module.__class__ = ContiguousTokensTransformer
    return model


def use_plain_decoder(model: nn.Module) -> nn.Module:
    """Undo :func:`use_contiguous_decoder`: ``segment_anything``'s own transformer again; returns ``model``."""
    for module in model.modules():
        if type(module) is ContiguousTokensTransformer:
            module.__class__ = TwoWayTransformer
    return model
