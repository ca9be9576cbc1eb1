"""micro_sam's instance decoder: its names load both ways, bad weights and offline registries say what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.instance import build_decoder, decoder_state, registry_decoder_state
from napari_sam_peft.core.instance.targets import DECODER_STRIDE, distance_targets


def test_the_state_uses_micro_sams_names_and_loads_into_micro_sam(tiny_sam):
    from micro_sam.instance_segmentation import get_decoder, get_unetr

    torch.manual_seed(0)
    state = decoder_state(build_decoder(tiny_sam))
    unetr_names = {
        k for k in get_unetr(tiny_sam.image_encoder, device="cpu").state_dict() if not k.startswith("encoder")
    }
    assert set(state) == unetr_names
    theirs = get_decoder(tiny_sam.image_encoder, state, device="cpu")
    assert all(torch.equal(theirs.state_dict()[k], v) for k, v in state.items())


def test_weights_for_another_model_are_a_clear_error(tiny_sam):
    state = decoder_state(build_decoder(tiny_sam))
    state["base.block.1.weight"] = torch.zeros(3, 3)
    with pytest.raises(SamPeftError, match="do not fit this model"):
        build_decoder(tiny_sam, state)


def test_models_without_a_registry_decoder_have_none_and_offline_fetches_say_so(monkeypatch):
    assert registry_decoder_state("demo") is None

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    import pooch

    monkeypatch.setattr(pooch.Pooch, "fetch", offline)
    with pytest.raises(SamPeftError, match="could not be downloaded.*falls back to mask generation"):
        registry_decoder_state("vit_t_lm")


def test_targets_mark_each_object_with_its_centre_and_boundary_distances():
    labels = np.zeros((32, 32), dtype=np.uint32)
    labels[8:24, 4:20] = 1
    target = distance_targets(labels, input_size=64, embedding_side=8)  # 128 x 128: 4 output pixels per pixel
    assert target.shape == (3, 8 * DECODER_STRIDE, 8 * DECODER_STRIDE)
    foreground, centre, boundary = target.numpy()
    assert foreground[40, 40] == 1 and foreground[10, 10] == 0 and foreground[100:, :].max() == 0
    inside = foreground > 0.5
    assert (
        centre[inside].argmin() == np.abs(np.argwhere(inside) - [63.5, 47.5]).sum(1).argmin()
        or centre[64, 48] < 0.1
    )
    assert boundary[64, 48] < boundary[34, 48]  # (inverted) boundary distance: small deep inside
