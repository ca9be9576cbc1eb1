from napari_sam_peft.core.architecture import DEMO, VIT_B, VIT_H
from napari_sam_peft.core.peft import PRESETS, recommend_preset

GIB = 1024**3


def test_cpu_trains_the_decoder_from_cached_embeddings():
    rec = recommend_preset("cpu", VIT_B)
    assert rec.preset == "freeze_encoder"
    assert "CPU" in rec.reason


def test_cpu_with_the_small_demo_model_adapts_only_the_last_block():
    rec = recommend_preset("cpu", DEMO)
    assert rec.preset in PRESETS and rec.blocks == "last 1"


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
