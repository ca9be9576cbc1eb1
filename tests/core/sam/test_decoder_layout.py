"""The decoder's transformer on contiguous image tokens: segment_anything's numbers and gradients."""

from __future__ import annotations

import pytest
import torch
from segment_anything.modeling.transformer import TwoWayTransformer

from napari_sam_peft.core.sam.architecture import TINY, build_sam
from napari_sam_peft.core.sam.decoder_layout import ContiguousTokensTransformer, use_plain_decoder
from napari_sam_peft.core.sam.tiny_vit import TINY_VIT_TEST


@pytest.mark.parametrize("architecture", [TINY, TINY_VIT_TEST], ids=["vit", "tiny_vit"])
def test_every_model_we_build_has_the_contiguous_transformer_with_the_same_state_dict(architecture):
    sam = build_sam(architecture)
    assert type(sam.mask_decoder.transformer) is ContiguousTokensTransformer
    keys = set(sam.state_dict())
    assert set(use_plain_decoder(sam).state_dict()) == keys
    assert type(sam.mask_decoder.transformer) is TwoWayTransformer


def test_masks_and_gradients_are_segment_anythings():
    torch.manual_seed(0)
    sam = build_sam(TINY)
    embeddings = torch.randn(1, TINY.prompt_embed_dim, TINY.embedding_size, TINY.embedding_size)
    boxes = torch.tensor([[2.0, 3.0, 40.0, 30.0], [10.0, 12.0, 50.0, 60.0]])
    results = []
    for kind in (TwoWayTransformer, ContiguousTokensTransformer):
        sam.mask_decoder.transformer.__class__ = kind
        sam.zero_grad()
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
        logits, iou = sam.mask_decoder(embeddings, sam.prompt_encoder.get_dense_pe(), sparse, dense, True)
        (logits.square().mean() + iou.sum()).backward()
        grads = [p.grad.clone() for p in sam.mask_decoder.parameters() if p.grad is not None]
        results.append((logits.detach(), iou.detach(), grads))
    (plain, plain_iou, plain_grads), (ours, ours_iou, our_grads) = results
    torch.testing.assert_close(ours, plain, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours_iou, plain_iou, rtol=1e-4, atol=1e-5)
    assert len(our_grads) == len(plain_grads) > 0
    for mine, theirs in zip(our_grads, plain_grads, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-3, atol=1e-5)
