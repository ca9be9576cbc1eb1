"""Trainable parameters on SAM 2.1 (Hiera) equal micro_sam dev's ``PEFT_Sam2`` on the same configuration.

The same configuration: micro_sam dev's ``get_sam2_train_model(peft_kwargs=..., freeze=...)`` with the
PEFT module and blocks of each preset, and ``freeze`` naming SAM 2's memory parts (memory attention,
memory encoder, object pointers...), which a 2D step does not run, so napari-sam-peft does not train
them. Both are counted on models built on the meta device (no memory, no weights). The reference is
micro_sam dev's source, copied in tests/reference.
"""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.peft import PRESETS, count_trainable_parameters, spec_from_preset
from napari_sam_peft.core.sam.hiera_architecture import HVIT_B, HVIT_T, TINY_HIERA
from napari_sam_peft.core.sam.sam2_model import build_sam2_model
from tests.reference import micro_sam_dev_peft_sam2 as ref

#: Our presets as micro_sam dev configures them: (PEFT module or None, its keyword arguments, whether
#: the image encoder is frozen when there is no module).
MICRO_SAM_DEV = {
    "full_ft": (None, {}, False),
    "freeze_encoder": (None, {}, True),
    "ln_tune": (ref.LayerNormSurgery, {}, True),
    "bias_tune": (ref.BiasSurgery, {}, True),
    "attn_tune": (ref.AttentionSurgery, {}, True),
    "ssf": (ref.SSFSurgery, {}, True),
    "fact": (ref.FacTSurgery, {"rank": 16}, True),
    "lora": (ref.LoRASurgery, {"rank": 32}, True),
    "qlora": (ref.LoRASurgery, {"rank": 32}, True),  # quantisation changes storage, not what trains
    "adaptformer": (ref.AdaptFormer, {"projection_size": 64}, True),
    "late_lora": (ref.LoRASurgery, {"rank": 32, "update_matrices": ["q", "k", "v", "mlp"]}, True),
    "late_ft": (ref.ClassicalSurgery, {}, True),
}
#: What a 2D step runs: the rest of SAM2Base is its memory (video) machinery.
RUN_IN_2D = ("image_encoder", "sam_prompt_encoder", "sam_mask_decoder")


def micro_sam_dev_count(architecture, preset: str) -> int:
    """Trainable parameters of micro_sam dev's SAM 2 training model for ``preset`` (meta device)."""
    module, kwargs, frozen_encoder = MICRO_SAM_DEV[preset]
    model = build_sam2_model(architecture, device="meta")
    blocks = list(spec_from_preset(preset, architecture.depth).blocks)
    with torch.device("meta"):
        if module is not None:
            kwargs = dict(kwargs)
            rank = kwargs.pop("rank", None)
            ref.PEFT_Sam2(model, rank=rank, peft_module=module, attention_layers_to_update=blocks, **kwargs)
    freeze = [name for name, _ in model.named_children() if name not in RUN_IN_2D]
    freeze += [name for name, _ in model.named_parameters(recurse=False)]
    if module is None and frozen_encoder:
        freeze.append("image_encoder")
    for name, param in model.named_parameters():  # get_sam2_train_model's `freeze`
        if any(name.startswith(component) for component in freeze):
            param.requires_grad = False
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_every_preset_has_a_micro_sam_dev_configuration_but_decoder_lora():
    assert set(MICRO_SAM_DEV) | {"decoder_lora"} == set(PRESETS)


@pytest.mark.parametrize("preset", sorted(MICRO_SAM_DEV))
@pytest.mark.parametrize("architecture", [TINY_HIERA, HVIT_T, HVIT_B], ids=lambda a: a.name)
def test_counts_equal_micro_sam_devs_peft_sam2(architecture, preset):
    spec = spec_from_preset(preset, architecture.depth)
    assert count_trainable_parameters(spec, architecture) == micro_sam_dev_count(architecture, preset)


def test_late_presets_adapt_the_second_half_of_hieras_blocks():
    # hvit_t: stages of 1, 2, 7 and 2 blocks; late = blocks 6-11, the last four of stage 3 and stage 4
    assert spec_from_preset("late_lora", HVIT_T.depth).blocks == tuple(range(6, 12))
    assert [HVIT_T.stage_of_block(b) for b in range(6, 12)] == [2, 2, 2, 2, 3, 3]
