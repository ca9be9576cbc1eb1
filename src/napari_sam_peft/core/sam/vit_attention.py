"""SAM's ViT attention a chunk of queries at a time: a global block never holds its whole attention map.

A global-attention block of vit_b at 1024 px attends over 64 x 64 = 4096 tokens: its attention map
is 12 heads x 4096 x 4096 floats (805 MB), and ``segment_anything.modeling.image_encoder.Attention``
holds three of them at once (the logits, the logits plus the relative-position bias, the softmax).
:class:`ChunkedAttention` computes the same thing for :data:`QUERY_CHUNK` queries at a time, with the
bias added inside one fused ``baddbmm``: the same numbers (to float rounding), the same parameters
and state-dict keys, and on a 2-core CPU (one vit_b global block at 1024 px, float32):

- embedding (no gradients): peak 2.45 GB -> 0.39 GB above the input, 1.82 s -> 1.72 s;
- training (forward + backward): peak 2.63 GB -> 1.37 GB, time unchanged (3.6 s); the softmax
  outputs the backward pass needs are still kept, one chunk each.

Windowed blocks (14 x 14 = 196 tokens per window) are below the chunk size and run unchanged.
:func:`use_chunked_attention` swaps the class of every ``Attention`` in a model (``build_sam`` does it
for every ViT it builds); :func:`use_plain_attention` swaps it back (benchmarks run micro_sam's side
with the attention its users get).
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn

from .internals import swap_class

#: queries per chunk: a chunk's attention map for vit_b at 1024 px is 12 x 512 x 4096 floats (100 MB)
QUERY_CHUNK = 512


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """softmax(scale * q k^T + bias) v for one chunk of queries: q (BH, n, C), k and v (BH, N, C)."""
    if bias is None:
        logits = torch.bmm(q, k.transpose(-2, -1)) * scale
    else:
        logits = torch.baddbmm(bias, q, k.transpose(-2, -1), alpha=scale)
    return logits.softmax(dim=-1) @ v


class ChunkedAttention(Attention):
    """``segment_anything``'s ``Attention`` (same parameters), computed :data:`QUERY_CHUNK` queries at a time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over the (B, H, W, C) grid ``x``; small grids (windows) take the original path."""
        batch, height, width, _ = x.shape
        tokens = height * width
        if tokens <= QUERY_CHUNK:
            return super().forward(x)
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, batch * self.num_heads, tokens, -1).unbind(0)
        rel_h = rel_w = None
        if self.use_rel_pos:  # the decomposed relative-position bias, as add_decomposed_rel_pos builds it
            r_q = q.reshape(batch * self.num_heads, height, width, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(height, height, self.rel_pos_h))
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(width, width, self.rel_pos_w))
            rel_h, rel_w = rel_h.reshape(batch * self.num_heads, tokens, height), rel_w.reshape(-1, tokens, width)
        chunks = []
        for start in range(0, tokens, QUERY_CHUNK):
            rows = slice(start, start + QUERY_CHUNK)
            bias = None
            if rel_h is not None and rel_w is not None:
                bias = (rel_h[:, rows, :, None] + rel_w[:, rows, None, :]).flatten(2)
            chunks.append(_attend(q[:, rows], k, v, bias, self.scale))
        out = torch.cat(chunks, dim=1)
        out = out.view(batch, self.num_heads, height, width, -1).permute(0, 2, 3, 1, 4)
        return self.proj(out.reshape(batch, height, width, -1))


def use_chunked_attention(model: nn.Module) -> nn.Module:
    """Compute every ViT ``Attention`` of ``model`` in chunks (in place; weights untouched); returns ``model``."""
    for module in model.modules():
        if type(module) is Attention:
            swap_class(module, ChunkedAttention)
    return model


def use_plain_attention(model: nn.Module) -> nn.Module:
    """Undo :func:`use_chunked_attention`: ``segment_anything``'s own attention again; returns ``model``."""
    for module in model.modules():
        if type(module) is ChunkedAttention:
            swap_class(module, Attention)
    return model
