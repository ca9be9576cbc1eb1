"""The model a method is attached to: its selected blocks and the parameters inside them."""

from __future__ import annotations

import pytest
from torch import nn

from napari_sam_peft.core.peft.target import EncoderTarget, parent_and_attribute


@pytest.mark.parametrize(("blocks", "all_blocks"), [((2, 3), False), ((0, 1, 2, 3), True), ((), False)])
def test_the_selected_blocks_are_the_encoders_blocks_in_order(tiny_sam, blocks, all_blocks):
    target = EncoderTarget(tiny_sam, blocks)
    assert target.block_paths == [f"image_encoder.blocks.{i}" for i in range(4)]
    assert target.selected_blocks() == [tiny_sam.image_encoder.blocks[i] for i in blocks]
    assert target.all_blocks is all_blocks


def test_a_parameter_is_inside_a_selected_block_or_part_only_by_its_path(tiny_sam):
    target = EncoderTarget(tiny_sam, (3,))
    assert target.in_selected_block("image_encoder.blocks.3.attn.qkv.weight")
    assert not target.in_selected_block("image_encoder.blocks.30.attn.qkv.weight")  # no prefix match
    assert not target.in_selected_block("image_encoder.blocks.2.attn.qkv.weight")
    assert target.in_selected_part("image_encoder.blocks.3.mlp.lin1.weight", ("mlp",))
    assert not target.in_selected_part("image_encoder.blocks.3.attn.qkv.weight", ("mlp",))
    assert target.qkv_groups(tiny_sam.image_encoder.blocks[3].attn.qkv) == 1


def test_parent_and_attribute_find_where_a_module_hangs():
    root = nn.Sequential(nn.Sequential(nn.Linear(2, 2)))
    assert parent_and_attribute(root, "0.0") == (root[0], "0")
    assert parent_and_attribute(root, "0") == (root, "0")
