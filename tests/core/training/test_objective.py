"""The training objective: prompts from the true objects, decoded masks, losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam_peft.core.training.objective import correction_points, mask_losses


def test_low_resolution_targets_line_up_with_the_decoders_masks():
    """A trained model's box masks match the low-res targets (a misaligned target would score ~0)."""
    import numpy as np
    import torch

    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.sam.loading import load_model
    from napari_sam_peft.core.sam.preprocessing import model_input
    from napari_sam_peft.core.training.objective import decode, low_res_stride, mask_losses, object_prompts

    model = load_model("demo", device="cpu")
    sample = make_sample("nuclei", seed=11)
    with torch.no_grad():
        embeddings = model.sam.image_encoder(model_input(model.sam, sample.image))
        for stride in (1, low_res_stride(model.sam)):
            target, boxes, _ = object_prompts(sample.labels, np.random.default_rng(0), 16, 1.0, "cpu", stride)
            logits, _ = decode(model.sam, embeddings, target.shape[-2:], boxes=boxes, full_resolution=stride == 1)
            assert logits.shape[-2:] == target.shape[-2:]
            assert mask_losses(logits, target)[1].mean() > 0.75, f"stride {stride}"


def test_a_perfect_prediction_has_iou_one_and_a_lower_loss_than_its_inverse():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 20
    loss, iou = mask_losses(perfect, target)
    wrong_loss, wrong_iou = mask_losses(-perfect, target)
    assert iou.item() == pytest.approx(1.0, abs=1e-5) and wrong_iou.item() == 0
    assert loss.item() < wrong_loss.item()


def test_corrections_point_into_the_missed_and_the_spurious_region():
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, :, :4] = 1  # object 0: the left half, predicted as the right half
    target[1, 0] = 1  # object 1: predicted exactly
    prediction = torch.where(target > 0, 1.0, -1.0)
    prediction[0] = -prediction[0]
    points, labels = correction_points(prediction, target, np.random.default_rng(0))
    assert labels.tolist() == [[1, 0], [-1, -1]]
    (px, py), (nx, ny) = points[0].tolist()
    assert target[0, 0, int(py), int(px)] == 1 and target[0, 0, int(ny), int(nx)] == 0


@pytest.mark.parametrize("preset", ["freeze_encoder", "late_lora"])
def test_backpropagating_each_pass_at_once_gives_the_gradients_of_one_backward_pass(preset):
    """The lean step (one decoder pass's graph at a time) trains exactly what the summed loss trains."""
    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.peft import attach, spec_from_preset
    from napari_sam_peft.core.sam.loading import load_model
    from napari_sam_peft.core.sam.preprocessing import model_input
    from napari_sam_peft.core.training.objective import objective

    model = load_model("demo", device="cpu")
    handle = attach(model.sam, spec_from_preset(preset, model.architecture.depth))
    sample = make_sample("cells", seed=1)
    params = {n: p for n, p in model.sam.named_parameters() if p.requires_grad}

    def step(backward):
        model.sam.zero_grad()
        torch.manual_seed(0)
        embeddings = model.sam.image_encoder(model_input(model.sam, sample.image))
        loss = objective(model.sam, embeddings, sample.labels, np.random.default_rng(3), 4, 2, backward)
        if backward is None:
            loss.backward()
        return float(loss.detach()), {n: p.grad.clone() for n, p in params.items() if p.grad is not None}

    summed_loss, summed = step(None)
    lean_loss, lean = step(lambda tensor, grad: tensor.backward(grad))
    assert lean_loss == pytest.approx(summed_loss, rel=1e-5)
    assert set(lean) == set(summed)
    assert any(n.startswith("image_encoder") for n in summed) == (preset == "late_lora")
    for name, grad in summed.items():
        torch.testing.assert_close(lean[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    handle.detach()
