"""Trainable parameters of every preset on SAM vit_b equal the paper's table (PAPER.md).

vit_b is built on the meta device: no memory, no weights, milliseconds.
"""

import pytest

from napari_sam_peft.core.peft import PRESETS, count_trainable_parameters, spec_from_preset
from napari_sam_peft.core.sam.architecture import VIT_B

PAPER_COUNTS = {
    "full_ft": 93_735_472,
    "freeze_encoder": 4_064_560,
    "ln_tune": 4_101_424,
    "bias_tune": 4_165_936,
    "attn_tune": 32_505_648,
    # The paper's 4,267,312 plus 1,536: the patch-embedding scale/shift is really applied here.
    "ssf": 4_267_312 + 1_536,
    "fact": 4_365_616,
    "lora": 5_244_208,
    "qlora": 5_244_208,
    "adaptformer": 5_254_204,
    "late_lora": 6_423_856,
    "late_ft": 46_638_128,
}


@pytest.mark.parametrize("preset", sorted(PAPER_COUNTS))
def test_vit_b_counts_equal_the_paper(preset):
    spec = spec_from_preset(preset, VIT_B.depth)
    assert count_trainable_parameters(spec, VIT_B) == PAPER_COUNTS[preset]


def test_late_ft_of_the_last_block_only_matches_micro_sams_low_memory_setting():
    spec = spec_from_preset("late_ft", VIT_B.depth, blocks="11")
    assert count_trainable_parameters(spec, VIT_B) == 11_168_688


def test_decoder_lora_trains_only_a_small_adapter():
    spec = spec_from_preset("decoder_lora", VIT_B.depth)
    # rank 16 on q and v of the 7 attention layers of the two-way transformer
    assert 0 < count_trainable_parameters(spec, VIT_B) < 200_000


def test_every_preset_is_counted():
    assert set(PAPER_COUNTS) | {"decoder_lora"} == set(PRESETS)
