"""Architectures: read off a state dict, named by micro_sam, recorded as JSON, compared by weight shapes."""

from __future__ import annotations

import json

import pytest

from napari_sam_peft.core.errors import InvalidCheckpointError
from napari_sam_peft.core.sam import registry
from napari_sam_peft.core.sam.architecture import (
    TINY,
    VIT_B,
    architecture_for_model_name,
    architecture_from_json,
    build_sam,
    infer_architecture,
    same_weight_shapes,
)
from napari_sam_peft.core.sam.tiny_vit import VIT_T


def test_vit_b_architecture_is_inferred_from_its_state_dict():
    sam = build_sam(VIT_B, device="meta")
    assert infer_architecture(sam.state_dict()) == VIT_B
    assert sum(p.numel() for p in sam.parameters()) == 93_735_472


def test_a_record_of_an_unknown_family_says_to_update():
    with pytest.raises(registry.UnknownFamilyError, match="update napari-sam-peft"):
        architecture_from_json(json.dumps({"family": "vit_z", "img_size": 64}))


@pytest.mark.parametrize("name", ["vit_b_lm", "vit_b_em_organelles", "vit_b"])
def test_micro_sam_names_give_their_architecture(name):
    assert architecture_for_model_name(name) == VIT_B


@pytest.mark.parametrize("name", ["vit_t", "vit_t_lm", "vit_t_em_organelles"])
def test_micro_sam_vit_t_names_give_mobile_sams_tiny_vit(name):
    assert architecture_for_model_name(name) == VIT_T


def test_an_unsupported_micro_sam_encoder_says_what_to_choose():
    with pytest.raises(
        InvalidCheckpointError,
        match=r"vit_z_lm.*Choose a vit_b, vit_l, vit_h, vit_t, hvit_t, hvit_s, hvit_b or hvit_l",
    ):
        architecture_for_model_name("vit_z_lm")


def test_the_json_record_round_trips_and_the_name_does_not_change_the_weights(tiny_sam):
    assert architecture_from_json(TINY.to_json()) == TINY
    inferred = infer_architecture(tiny_sam.state_dict(), name="renamed")
    assert inferred.name == "renamed" and same_weight_shapes(TINY, inferred)
    assert not same_weight_shapes(VIT_B, inferred)
