import pytest

from napari_sam_peft.core.peft import recommend_preset
from napari_sam_peft.core.peft.recommend import recommended_lr, recommended_steps
from napari_sam_peft.core.sam.architecture import DEMO, VIT_B, VIT_H
from napari_sam_peft.core.sam.tiny_vit import LITE_MEDSAM_ARCHITECTURE, VIT_T

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


def test_on_a_cpu_a_vit_b_user_is_pointed_to_a_tiny_vit_model_and_told_why():
    reason = recommend_preset("cpu", VIT_B).reason
    assert "lite_medsam" in reason and "vit_t_lm" in reason and "8%" in reason


def test_tiny_vit_models_adapt_their_late_blocks_on_a_cpu():
    for architecture in (VIT_T, LITE_MEDSAM_ARCHITECTURE):
        rec = recommend_preset("cpu", architecture)
        assert (rec.preset, rec.lr) == ("late_lora", 1e-4)


@pytest.mark.parametrize(
    ("method", "architecture", "lr"),
    [
        ("lora", DEMO, 1e-3),
        ("full_ft", DEMO, 1e-3),
        ("lora", LITE_MEDSAM_ARCHITECTURE, 1e-4),
        ("freeze_encoder", LITE_MEDSAM_ARCHITECTURE, 1e-4),
        ("full_ft", LITE_MEDSAM_ARCHITECTURE, 1e-4),
        ("lora", VIT_B, 1e-4),
        ("freeze_encoder", VIT_B, 1e-5),
    ],
)
def test_the_recommended_learning_rate_is_larger_for_added_tensors_and_the_small_model(method, architecture, lr):
    assert recommended_lr(method, architecture) == lr


def test_a_method_that_trains_only_what_it_adds_gets_the_added_tensors_rate_without_a_list_to_update():
    from napari_sam_peft.core.peft.methods import METHODS, register_method

    added_only = {name for name, method in METHODS.items() if method.trains_added_only}
    assert added_only == {"lora", "fact", "ssf", "adaptformer", "decoder_lora"}
    new = register_method("test_adapter", "A new adapter method.", inject=lambda target, options: [])
    try:
        assert recommended_lr("test_adapter", VIT_B) == 1e-4 == recommended_lr("lora", VIT_B)
        assert new.trains_added_only
    finally:
        del METHODS["test_adapter"]


@pytest.mark.parametrize(
    ("objects", "per_step", "steps"),
    [
        (57, 8, 200),  # three generated images: 25 passes = 178 steps, rounded up to 50
        (5, 8, 100),  # a handful of objects still gets a run long enough to learn
        (400, 8, 1000),  # a large store is capped; early stopping ends it sooner if it plateaus
        (57, 4, 400),  # fewer objects per step: more steps for the same passes
        (0, 8, 100),
    ],
)
def test_the_recommended_step_count_follows_the_number_of_training_objects(objects, per_step, steps):
    assert recommended_steps(objects, per_step) == steps
