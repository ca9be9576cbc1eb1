"""Attaching a method to a model: once only, where the blocks say, which stages it touches."""

from __future__ import annotations

import pytest

from napari_sam_peft.core.peft import attach, attached_to, frozen_prefix_stages, spec_from_preset
from napari_sam_peft.core.peft.attachment import base_name
from napari_sam_peft.core.sam.architecture import TINY


def test_blocks_override_places_the_method_anywhere(tiny_sam):
    handle = attach(tiny_sam, spec_from_preset("lora", TINY.depth, blocks="last 1"))
    encoder = [n for n in handle.trainable_names if n.startswith("image_encoder")]
    assert encoder and all(n.startswith("image_encoder.blocks.3.") for n in encoder)


def test_attaching_twice_is_refused(tiny_sam):
    attach(tiny_sam, spec_from_preset("lora", TINY.depth))
    with pytest.raises(Exception, match="already carries an adapter"):
        attach(tiny_sam, spec_from_preset("ssf", TINY.depth))


@pytest.mark.parametrize(
    ("preset", "blocks", "frozen"),
    [("freeze_encoder", None, TINY.depth + 2), ("lora", "last 1", 1 + 3), ("lora", "last 2", 1 + 2)],
)
def test_the_frozen_prefix_ends_at_the_first_adapted_block(tiny_sam, preset, blocks, frozen):
    handle = attach(tiny_sam, spec_from_preset(preset, TINY.depth, blocks=blocks))
    assert attached_to(tiny_sam) is handle
    assert frozen_prefix_stages(tiny_sam) == frozen  # stage 0 is the patch embedding, then one per block
    handle.detach()
    assert attached_to(tiny_sam) is None


def test_a_wrapped_parameter_is_named_as_in_plain_sam():
    assert base_name("image_encoder.blocks.0.attn.qkv.base.weight") == "image_encoder.blocks.0.attn.qkv.weight"
