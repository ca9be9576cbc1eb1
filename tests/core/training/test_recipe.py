"""The recipe a run takes: the CPU's on a CPU, the paper's elsewhere, and what a job sets itself wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft.recommend import recommended_lr
from napari_sam_peft.core.sam.architecture import VIT_B
from napari_sam_peft.core.training.job import TrainingJob
from napari_sam_peft.core.training.loop import TrainingConfig
from napari_sam_peft.core.training.plan import job_schedule
from napari_sam_peft.core.training.recipe import CPU, PAPER, recipe_for, recipe_named


def _job(**values) -> TrainingJob:
    return TrainingJob(store=Path("/data/cells.sampeft.zarr"), model="vit_b", preset="lora", **values)


def test_auto_is_the_cpu_recipe_on_a_cpu_and_the_papers_on_a_gpu():
    assert recipe_for("auto", "cpu") is CPU
    assert recipe_for("auto", "cuda") is PAPER and recipe_for("auto", "mps") is PAPER
    assert recipe_for("paper", "cpu") is PAPER  # one option away on a CPU
    assert recipe_for("cpu", "cuda") is CPU


def test_the_cpu_recipe_runs_fewer_decoder_passes_at_a_larger_rate_and_validates_sooner():
    # the decoder passes per object: a box start, a point start, one per correction
    assert (2 + CPU.sub_iterations) * CPU.objects_per_image < (2 + PAPER.sub_iterations) * PAPER.objects_per_image
    assert CPU.lr_factor > PAPER.lr_factor == 1.0
    assert CPU.validate_every < PAPER.validate_every
    assert (PAPER.objects_per_image, PAPER.sub_iterations) == (8, 8)  # the paper's


def test_a_job_on_a_cpu_trains_by_the_cpu_recipe_and_says_so():
    schedule = job_schedule(_job(), "lora", VIT_B, 40, "cpu")
    config = TrainingConfig.of(_job(), schedule)
    assert (config.objects_per_image, config.sub_iterations, config.validate_every) == (
        CPU.objects_per_image,
        CPU.sub_iterations,
        CPU.validate_every,
    )
    assert config.lr == pytest.approx(CPU.rate(recommended_lr("lora", VIT_B)))
    assert schedule.lr_chosen == "recommended" and schedule.describe() == CPU.summary
    on_gpu = job_schedule(_job(), "lora", VIT_B, 40, "cuda")
    assert (on_gpu.recipe, on_gpu.sub_iterations, on_gpu.lr) == (PAPER, 8, recommended_lr("lora", VIT_B))


def test_what_a_job_sets_overrides_its_recipe_and_the_description_names_it():
    job = _job(recipe="cpu", sub_iterations=6, objects_per_image=16, lr=1e-3)
    schedule = job_schedule(job, "lora", VIT_B, 40, "cuda")
    assert (schedule.sub_iterations, schedule.objects_per_image, schedule.validate_every) == (6, 16, 5)
    assert (schedule.lr, schedule.lr_chosen) == (1e-3, "given")
    assert schedule.describe().startswith(CPU.summary)
    described = schedule.describe()
    assert described.endswith("(given: 16 objects per step, 6 correction passes)")
    none = job_schedule(_job(recipe="paper", sub_iterations=0), "lora", VIT_B, 40, "cpu")
    assert none.sub_iterations == 0  # no corrections at all is a choice, not "the recipe's"


def test_the_cpu_recipe_recommends_a_shorter_run_in_steps_of_its_own_size():
    paper = job_schedule(_job(recipe="paper"), "lora", VIT_B, 58, "cpu")
    cpu = job_schedule(_job(recipe="cpu"), "lora", VIT_B, 58, "cpu")
    assert paper.steps == 200  # 25 passes over 58 objects, 8 a step
    assert cpu.steps == 150  # 10 passes over 58 objects, 4 a step
    assert cpu.steps * CPU.objects_per_image < paper.steps * PAPER.objects_per_image


def test_the_rate_factor_stops_at_the_largest_rate_that_learns():
    assert CPU.rate(1e-4) == pytest.approx(3e-4) and CPU.rate(1e-5) == pytest.approx(3e-5)
    assert CPU.rate(1e-3) == 1e-3  # the demo model's rate is already the largest
    assert PAPER.rate(1e-4) == 1e-4


def test_an_unknown_recipe_is_one_line_naming_the_choices():
    with pytest.raises(SamPeftError, match="Unknown recipe 'fast': choose one of auto, paper, cpu"):
        recipe_named("fast")
