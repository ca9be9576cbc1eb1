"""The headless demo loop: a simulated user corrects domain-B images, finetuning helps."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.cli.demo_loop import CorrectionCounts, DemoSettings, correct_image, run_headless_demo
from napari_sam_peft.cli.demo_session import demo_session
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore

pytestmark = pytest.mark.slow  # the demo loop trains


def test_the_simulated_user_commits_every_true_object_and_says_how(tmp_path):
    sample = make_sample("nuclei", seed=3)  # the demo model's own domain: mostly accepted or quick fixes
    counts = CorrectionCounts()
    session = demo_session(DemoSettings(model="demo"), tmp_path / "s.sampeft.zarr")
    correct_image(session, "nuclei 3", sample.image, sample.labels, counts)
    n_objects = len(np.unique(sample.labels)) - 1
    assert counts.accepted_automatic + counts.corrected_with_prompts + counts.painted == n_objects
    assert counts.painted < n_objects // 2
    (stored,) = session.annotations.store.snapshot().images  # committed through the session, as the widget does
    assert len(stored.objects) == n_objects
    for obj in stored.objects:
        assert obj.source in ("automatic", "prompts", "painted")
        assert obj.source == "automatic" or obj.prompts.get("box")


def test_two_rounds_finetuning_helps_and_round_two_starts_from_ais(tmp_path):
    # the demo's own 24 steps, 2 correction passes: each step trains the instance decoder too (4 s on one core)
    settings = DemoSettings(
        model="demo",
        steps=24,
        sub_iterations=2,
        train_seeds=(0, 1),
        round_two_seeds=(2, 3),
        held_out_seeds=(100, 101),
    )
    messages: list[str] = []
    result = run_headless_demo(tmp_path, settings, say=messages.append)
    # every start and its corrections improve (two rounds, round two continued; on a 2-core AMD EPYC:
    # point +0.10, box +0.05 to +0.08, I_P +0.11 to +0.13, I_B +0.10 to +0.15, AIS +0.08 to +0.25)
    assert result.after["box"] > result.before["box"], result.table()
    assert result.after["i_p"] > result.before["i_p"] + 0.05, result.table()
    assert all(result.after[m] > result.before[m] for m in ("point", "i_b")), result.table()
    assert result.preset == "late_lora"  # the recommendation for a small model on a CPU
    # round two was pre-segmented with AIS by round one's adapter, and prompted with it: the model gave the user
    # more objects (accepted as pre-segmented, or fixed with box and clicks) and fewer were painted by hand.
    # How many AIS objects pass as they are after these 24 steps varies with the CPU and thread count (0-2 of
    # 41 seen), so the test does not count those alone.
    first, second = result.rounds

    def from_the_model(counts):
        return counts.accepted_automatic + counts.corrected_with_prompts

    assert from_the_model(second) > from_the_model(first), result.rounds_table()

    # the rounds annotate different images (round two's had 41 objects on CI's CPU, round one's 40): shares
    def painted_share(counts):
        return counts.painted / (counts.accepted_automatic + counts.corrected_with_prompts + counts.painted)

    assert painted_share(second) < painted_share(first), result.rounds_table()
    assert result.automatic["base"].method == "amg" and result.automatic["adapter"].method == "ais"
    assert result.after["ais"] > result.before["ais"], result.table()
    snapshot = AnnotationStore(tmp_path / "demo_cells.sampeft.zarr").snapshot()
    assert len(snapshot.images) == 4 and all(image.split == "train" for image in snapshot.images)
    assert "| change |" in result.table() and "| AIS |" in result.table()
    assert "| 2 | adapter + decoder (AIS) |" in result.rounds_table()
    assert any("round 2: annotated 2 images pre-segmented with AIS" in m for m in messages)
    # round two continued round one's adapter, and its adapter says so
    from napari_sam_peft.core.peft import Adapter

    round_one = Adapter.load(tmp_path / "demo_cells_round1.safetensors")
    assert Adapter.load(result.adapter).parent_adapter == round_one.identity
    assert any(
        "round 2: finetuning demo with late_lora" in m and "continuing round one's adapter" in m for m in messages
    )
    assert result.record.parent["new_samples"] == 2 and result.record.parent["samples"] >= 3
