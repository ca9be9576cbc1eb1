"""The bundled demo model meets its recorded scores (docs/models.md) within a tolerance."""

from __future__ import annotations

import pytest
from segment_anything import SamPredictor

from napari_sam_peft.core.data.sample_data import make_series
from napari_sam_peft.core.evaluation.interactive import evaluate_interactive
from napari_sam_peft.core.sam.loading import load_model

RECORDED_DOMAIN_A = {"point": 0.951, "box": 0.968, "i_p": 0.908, "i_b": 0.852}


@pytest.fixture(scope="module")
def demo_predictor():
    return SamPredictor(load_model("demo", device="cpu").sam)


@pytest.mark.slow
def test_demo_model_meets_its_recorded_domain_a_scores(demo_predictor):
    samples = [(s.image, s.labels) for s in make_series("nuclei", 2, seed=0)]
    scores = evaluate_interactive(demo_predictor, samples)
    for metric, recorded in RECORDED_DOMAIN_A.items():
        assert scores[metric] >= recorded - 0.1, (metric, scores[metric])


def test_demo_model_is_weak_on_domain_b(demo_predictor):
    samples = [(s.image, s.labels) for s in make_series("cells", 1, seed=0)]
    scores = evaluate_interactive(demo_predictor, samples, n_iterations=2)
    assert scores["box"] < 0.3  # the gap finetuning is for
