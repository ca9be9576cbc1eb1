from napari_sam_peft.core.peft import recommend_preset
from napari_sam_peft.core.sam.architecture import DEMO, VIT_B, VIT_H

GIB = 1024**3


def test_cpu_trains_the_decoder_from_cached_embeddings():
    rec = recommend_preset("cpu", VIT_B)
    assert rec.preset == "freeze_encoder"
    assert "CPU" in rec.reason


def test_cpu_with_the_small_demo_model_adapts_the_late_blocks_at_a_higher_learning_rate():
    rec = recommend_preset("cpu", DEMO)
    assert rec.preset == "late_lora" and rec.blocks is None and rec.lr == 1e-3
    assert recommend_preset("cpu", VIT_B).lr == 1e-5  # the paper's rate for SAM-sized models


def test_gpu_memory_moves_the_choice_towards_late_blocks():
    big = recommend_preset("cuda", VIT_B, free_memory=80 * GIB)
    mid = recommend_preset("cuda", VIT_B, free_memory=20 * GIB)
    small = recommend_preset("cuda", VIT_B, free_memory=10 * GIB)
    tiny = recommend_preset("cuda", VIT_B, free_memory=4 * GIB)
    assert (big.preset, mid.preset, small.preset, tiny.preset) == (
        "lora",
        "late_lora",
        "late_ft",
        "freeze_encoder",
    )
    assert small.blocks == "last 1"
    assert "GiB" in mid.reason


def test_bigger_encoders_need_more_memory_for_the_same_choice():
    assert recommend_preset("cuda", VIT_H, free_memory=20 * GIB).preset != "late_lora"
