"""Training: structured progress, best adapters, stop, early stopping, and the base left intact."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.data.sample_data import make_series
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft import Adapter, attached_to, spec_from_preset
from napari_sam_peft.core.sam.architecture import TINY
from napari_sam_peft.core.training.loop import TrainingConfig, TrainingHooks, train

SAMPLES = [(s.image, s.labels) for s in make_series("nuclei", 3, seed=0, shape=(64, 64))]


def _base_state(model):
    return {k: v.clone() for k, v in model.sam.state_dict().items()}


@pytest.mark.parametrize("preset", ["freeze_encoder", "late_lora", "decoder_lora"])
def test_training_reports_progress_returns_the_best_adapter_and_detaches(tiny_model, tmp_path, preset):
    base = _base_state(tiny_model)
    events, bests = [], []
    config = TrainingConfig(steps=6, lr=1e-3, objects_per_image=4, sub_iterations=2, validate_every=3)
    adapter = train(
        tiny_model,
        spec_from_preset(preset, TINY.depth),
        SAMPLES[:2],
        SAMPLES[2:],
        config,
        TrainingHooks(on_event=events.append, on_best=bests.append),
        training_snapshot="snap",
    )
    assert [e.step for e in events] == list(range(1, 7))
    assert events[2].val_score is not None and events[0].val_score is None
    assert all(e.its_per_second > 0 for e in events) and events[-1].eta_seconds == 0
    assert bests and adapter is bests[-1]
    assert adapter.training_snapshot == "snap" and "val_box_iou" in adapter.metrics
    # The model is back to its exact base weights, and the adapter reloads.
    assert attached_to(tiny_model.sam) is None
    assert all(torch.equal(tiny_model.sam.state_dict()[k], v) for k, v in base.items())
    Adapter.load(adapter.save(tmp_path / "a.safetensors")).attach_to(tiny_model)


def test_stop_ends_training_with_the_current_best(tiny_model):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) >= 2

    config = TrainingConfig(steps=50, objects_per_image=2, sub_iterations=1, validate_every=100)
    spec = spec_from_preset("freeze_encoder", TINY.depth)
    adapter = train(tiny_model, spec, SAMPLES, config=config, hooks=TrainingHooks(should_stop=should_stop))
    assert adapter.metrics["step"] == 2


def test_no_training_objects_is_a_clear_error(tiny_model):
    import numpy as np

    empty = [(SAMPLES[0][0], np.zeros_like(SAMPLES[0][1]))]
    with pytest.raises(
        SamPeftError, match=r"no training objects yet: commit objects in the Segment widget \(S, then C\)"
    ):
        train(tiny_model, spec_from_preset("lora", TINY.depth), empty)


@pytest.mark.slow
def test_joint_training_saves_an_instance_decoder_that_fits_the_labels_better(tiny_model, tmp_path):
    import numpy as np

    from napari_sam_peft.core.instance import build_decoder
    from napari_sam_peft.core.instance.loss import InstanceObjective
    from napari_sam_peft.core.sam.preprocessing import model_input

    torch.manual_seed(0)
    untrained = build_decoder(tiny_model.sam)
    config = TrainingConfig(steps=20, lr=1e-3, objects_per_image=2, sub_iterations=1, validate_every=6)
    spec = spec_from_preset("freeze_encoder", TINY.depth)
    adapter = train(tiny_model, spec, SAMPLES, config=TrainingConfig(**{**config.__dict__, "with_decoder": True}))
    assert (
        adapter.has_decoder and adapter.metrics["decoder_step"] == 20
    )  # the last step's decoder, whatever the best
    reloaded = Adapter.load(adapter.save(tmp_path / "a.safetensors"))
    assert set(reloaded.decoder) == set(untrained.state_dict())
    trained = build_decoder(tiny_model.sam, reloaded.decoder)
    with torch.no_grad():
        embeddings = tiny_model.sam.image_encoder(model_input(tiny_model.sam, SAMPLES[0][0]))

        def loss(decoder):
            objective = InstanceObjective(tiny_model.sam, decoder, [SAMPLES[0][1]])
            return float(objective.loss(embeddings, 0, np.random.default_rng(0)))

        assert loss(trained) < loss(untrained)
    # an adapter trained without the decoder has none
    assert not train(tiny_model, spec, SAMPLES, config=config).has_decoder
