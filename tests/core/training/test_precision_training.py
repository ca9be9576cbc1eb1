"""Training in reduced precision: the same quality as float32, float32 adapters, a clear refusal."""

from __future__ import annotations

import itertools

import pytest
import torch

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.peft import spec_from_preset
from napari_sam_peft.core.sam.loading import load_model
from napari_sam_peft.core.sam.precision import PrecisionNotAvailableError, supported_precisions
from napari_sam_peft.core.training.events import Event
from napari_sam_peft.core.training.loop import TrainingConfig, train
from napari_sam_peft.core.training.run import run_job
from napari_sam_peft.core.training.runs import runs_dir
from tests.core.training.conftest import _job


def _samples(seeds):
    return [(s.image, s.labels) for s in (make_sample("cells", seed=seed) for seed in seeds)]


#: whether this machine computes bfloat16 natively (where it only emulates it, bf16 training is 5-60x slower)
NATIVE_BF16 = supported_precisions(torch.device("cpu")) != ["fp32"]


@pytest.mark.slow  # 1-2 minutes where bfloat16 is native; the short form elsewhere
def test_bfloat16_autocast_reaches_the_float32_validation_score(monkeypatch):
    """Over 2 seeds, each run in both precisions, as one run's score moves by about 0.04 from seed to seed
    (in float32 alike).

    A CPU that only emulates bfloat16 computes the same numbers 5-60x slower (5 minutes for this test on
    2 cores): there the test trains 4 steps of one seed in each precision and checks that bfloat16 trained
    (other numbers than float32's) and saved float32 tensors; the scores are compared where it is native.
    """
    # bf16 is offered on a CPU that computes it natively; this one may only emulate it (slower, same numbers).
    # Not "auto": it measures which precision is faster here and may rightly keep float32 (see precision_probe)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    model = load_model("demo", device="cpu")
    spec = spec_from_preset("late_lora", model.architecture.depth)
    train_samples, val_samples = _samples((0, 1)), _samples((5,))
    scores: dict[str, list[float]] = {"fp32": [], "bf16": []}
    seeds, steps = ((0, 1), 30) if NATIVE_BF16 else ((0,), 4)
    for precision, seed in itertools.product(scores, seeds):
        settings = {"objects_per_image": 4, "sub_iterations": 1, "validate_every": 10}
        config = TrainingConfig(steps=steps, lr=1e-3, precision=precision, seed=seed, **settings)
        adapter = train(model, spec, train_samples, val_samples, config)
        scores[precision].append(adapter.metrics["val_box_iou"])
        assert all(t.dtype == torch.float32 for t in adapter.tensors.values())  # saved in float32
    assert scores["bf16"] != scores["fp32"]  # it did train in bfloat16
    if NATIVE_BF16:
        mean = {precision: sum(values) / len(values) for precision, values in scores.items()}
        assert mean["bf16"] >= mean["fp32"] - 0.02, scores
        assert mean["fp32"] > 0.1, scores  # the runs learned something to compare (the base model: about 0.0)


def test_a_run_says_which_precision_trained_it(store, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    events: list[Event] = []
    record = run_job(_job(store, steps=2), events.append)
    started = events[0]
    assert (started.precision, record.precision) == ("fp32", "fp32")
    assert started.precision_reason == "auto: this CPU (no AVX512-BF16 or AMX) has no native bfloat16"


def test_a_precision_the_cpu_only_emulates_is_refused_before_a_run_folder_is_made(store, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    for precision in ("bf16", "fp16"):
        with pytest.raises(PrecisionNotAvailableError, match="This machine supports: fp32"):
            run_job(_job(store, steps=2, precision=precision, device="cpu"), lambda event: None)
    assert not runs_dir(store.path).exists()
