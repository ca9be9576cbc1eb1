"""The PEFT layers: LoRA's scale and merge, FacT, scale-shift, the parallel adapter that cannot merge."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft import attach, spec_from_preset
from napari_sam_peft.core.peft.layers import (
    FacTQKV,
    LoRALinear,
    MergeNotSupportedError,
    ParallelAdapter,
    ScaleShift,
)
from napari_sam_peft.core.sam.architecture import TINY


def test_lora_alpha_scales_the_update(tiny_sam):
    spec_1 = spec_from_preset("lora", TINY.depth, rank=4, alpha=4)
    spec_2 = spec_from_preset("lora", TINY.depth, rank=4, alpha=8)
    handle = attach(tiny_sam, spec_1)
    qkv = tiny_sam.image_encoder.blocks[0].attn.qkv
    assert qkv.scale == 1.0
    handle.detach()
    attach(tiny_sam, spec_2)
    assert tiny_sam.image_encoder.blocks[0].attn.qkv.scale == 2.0


def _lora():
    return LoRALinear(nn.Linear(8, 24), rank=2, alpha=4, parts=("q", "v"))


WRAPPERS = {
    "lora-qv": _lora,
    "lora-plain": lambda: LoRALinear(nn.Linear(8, 6), rank=2, alpha=2),
    "fact": lambda: FacTQKV(nn.Linear(8, 24), rank=2),
    "ssf": lambda: ScaleShift(nn.Linear(8, 6), channels=6),
}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_a_layer_starts_as_its_base_and_merges_to_what_it_computes(name):
    torch.manual_seed(0)
    layer = WRAPPERS[name]().eval()
    x = torch.randn(3, 8)
    torch.testing.assert_close(layer(x), layer.base(x))
    with torch.no_grad():
        for n, p in layer.named_parameters():
            if not n.startswith("base."):  # stand-in for training: move the added tensors
                p.add_(torch.randn_like(p) * 0.1)
    assert not torch.allclose(layer(x), layer.base(x))
    torch.testing.assert_close(layer.merged()(x), layer(x), rtol=1e-5, atol=1e-5)


def test_the_parallel_adapter_cannot_be_merged_and_bad_ranks_are_refused():
    with pytest.raises(MergeNotSupportedError):
        ParallelAdapter(nn.Linear(8, 8), dim=8, projection_size=4).merged()
    with pytest.raises(SamPeftError, match="rank must be a positive integer, not 0"):
        LoRALinear(nn.Linear(8, 8), rank=0, alpha=1)
