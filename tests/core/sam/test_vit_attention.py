"""Chunked global attention: segment_anything's numbers and gradients, without the whole attention map."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from napari_sam_peft.core.peft import attach, spec_from_preset
from napari_sam_peft.core.sam import vit_attention
from napari_sam_peft.core.sam.architecture import TINY, build_sam
from napari_sam_peft.core.sam.vit_attention import ChunkedAttention, use_plain_attention


def test_every_vit_we_build_computes_attention_in_chunks_with_the_same_state_dict():
    sam = build_sam(TINY)
    assert {type(block.attn) for block in sam.image_encoder.blocks} == {ChunkedAttention}
    keys = set(sam.state_dict())
    assert set(use_plain_attention(sam).state_dict()) == keys
    assert {type(block.attn) for block in sam.image_encoder.blocks} == {Attention}


@pytest.mark.parametrize("rel_pos", [True, False])
def test_chunks_give_the_plain_attentions_output_and_gradients(monkeypatch, rel_pos):
    monkeypatch.setattr(vit_attention, "QUERY_CHUNK", 5)  # 16 tokens: chunks of 5, 5, 5 and 1 queries
    torch.manual_seed(0)
    attention = Attention(dim=32, num_heads=2, use_rel_pos=rel_pos, input_size=(4, 4))
    if rel_pos:
        with torch.no_grad():
            attention.rel_pos_h.normal_(0, 0.5)
            attention.rel_pos_w.normal_(0, 0.5)
    x = torch.randn(2, 4, 4, 32)
    results = []
    for kind in (Attention, ChunkedAttention):
        attention.__class__ = kind
        attention.zero_grad()
        out = attention(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in attention.parameters()]))
    (plain, plain_grads), (chunked, chunked_grads) = results
    torch.testing.assert_close(chunked, plain, rtol=1e-5, atol=1e-6)
    for a, b in zip(chunked_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_lora_trains_through_chunked_attention(monkeypatch, tiny_sam):
    monkeypatch.setattr(vit_attention, "QUERY_CHUNK", 3)  # the tiny model's global blocks see 16 tokens
    handle = attach(tiny_sam, spec_from_preset("lora", TINY.depth, rank=2))
    image = torch.randn(1, 3, TINY.img_size, TINY.img_size)
    tiny_sam.image_encoder(image).square().mean().backward()
    grads = [p.grad for p in handle.trainable_parameters() if p.grad is not None]
    handle.detach()
    assert grads and all(torch.isfinite(g).all() for g in grads)
