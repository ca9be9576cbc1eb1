"""Encoder families by name and by model, and the errors for a family this version does not know."""

from __future__ import annotations

import pytest
from torch import nn

from napari_sam_peft.core.sam.architecture import TINY
from napari_sam_peft.core.sam.registry import (
    UnknownFamilyError,
    family_for,
    family_named,
    family_of,
    image_encoder_of,
)
from napari_sam_peft.core.sam.vit import VIT


def test_a_model_its_encoder_and_its_architecture_find_the_vit_family(tiny_sam):
    assert image_encoder_of(tiny_sam) is tiny_sam.image_encoder
    assert image_encoder_of(tiny_sam.image_encoder) is tiny_sam.image_encoder
    assert (
        family_of(tiny_sam) is family_of(tiny_sam.image_encoder) is family_for(TINY) is family_named("vit") is VIT
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: family_named("vit_z"), "Unknown image-encoder family 'vit_z'.*update napari-sam-peft"),
        (lambda: family_of(nn.Linear(2, 2)), r"\(Linear\) is of no family napari-sam-peft supports \(vit"),
    ],
    ids=["unknown-name", "unknown-encoder"],
)
def test_an_unknown_family_is_a_clear_error(call, message):
    with pytest.raises(UnknownFamilyError, match=message):
        call()
