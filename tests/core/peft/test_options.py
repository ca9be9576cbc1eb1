"""Typed options, one table row per method with the same assertions for each (as HF peft's config tests).

Also: the spec and architecture JSON that adapter files record is byte for byte what earlier versions
wrote, so their files load and keep their identity.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from napari_sam_peft.core.peft import (
    METHODS,
    PRESETS,
    Adapter,
    AdaptFormerOptions,
    DecoderLoraOptions,
    FactOptions,
    InvalidOptionError,
    LoraOptions,
    MethodOptions,
    PeftSpec,
    attach,
    get_method,
    make_spec,
    register_method,
    spec_from_preset,
)
from napari_sam_peft.core.peft import methods as methods_module
from napari_sam_peft.core.sam.architecture import NAMED_ARCHITECTURES, TINY, architecture_from_json

# method -> (options class, valid non-default values, a bad value or None when it has no options)
ROWS = {
    "full_ft": (MethodOptions, {}, None),
    "freeze_encoder": (MethodOptions, {}, None),
    "ln_tune": (MethodOptions, {}, None),
    "bias_tune": (MethodOptions, {}, None),
    "attn_tune": (MethodOptions, {}, None),
    "ssf": (MethodOptions, {}, None),
    "fact": (FactOptions, {"rank": 4, "dropout": 0.0}, {"dropout": 1.5}),
    "lora": (LoraOptions, {"rank": 4, "alpha": 8.0, "targets": ("q", "k", "mlp")}, {"targets": ("x",)}),
    "adaptformer": (AdaptFormerOptions, {"projection_size": 8, "dropout": 0.1}, {"projection_size": 0}),
    "decoder_lora": (DecoderLoraOptions, {"rank": 2, "targets": ("out",)}, {"rank": -1}),
}


def test_every_method_has_a_row():
    assert set(ROWS) == set(METHODS)


@pytest.mark.parametrize("method", sorted(ROWS))
def test_defaults_come_from_the_options_dataclass(method):
    options_class, _, _ = ROWS[method]
    options = get_method(method).options()
    assert type(options) is options_class and options == options_class()
    assert set(options.to_dict()) == {f.name for f in dataclasses.fields(options_class)}
    assert all(f.metadata.get("help") for f in dataclasses.fields(options_class))


@pytest.mark.parametrize("method", sorted(ROWS))
def test_options_round_trip_through_the_adapter_files_metadata(tiny_model, tmp_path, method):
    _, values, _ = ROWS[method]
    spec = make_spec(method, TINY.depth, blocks="last 2", options=values)
    assert all(getattr(spec.options, name) == value for name, value in values.items())
    handle = attach(tiny_model.sam, spec)
    path = Adapter.from_attached(handle, tiny_model).save(tmp_path / f"{method}.safetensors")
    handle.detach()
    loaded = Adapter.load(path)
    assert loaded.spec == spec and type(loaded.spec.options) is type(spec.options)
    assert loaded.spec.to_json() == spec.to_json()


@pytest.mark.parametrize("method", sorted(ROWS))
def test_bad_option_names_and_values_are_refused_clearly(method):
    options_class, _, bad = ROWS[method]
    names = ", ".join(sorted(f.name for f in dataclasses.fields(options_class))) or "none"
    with pytest.raises(InvalidOptionError, match=f"no option 'colour' \\(its options: {names}\\)"):
        make_spec(method, TINY.depth, options={"colour": 1})
    if bad is not None:
        with pytest.raises(InvalidOptionError, match=options_class.label):
            make_spec(method, TINY.depth, options=bad)


def test_presets_keep_only_what_they_change():
    for preset in PRESETS.values():
        defaults = get_method(preset.method).options()
        for name, value in preset.overrides.items():
            assert getattr(defaults, name) != value, (preset.name, name)


def test_code_reads_typed_options():
    spec = spec_from_preset("late_lora", 12, rank=8)
    assert isinstance(spec.options, LoraOptions)
    assert (spec.options.rank, spec.options.targets, spec.options.scale_alpha) == (8, ("q", "k", "v", "mlp"), 8.0)
    assert spec_from_preset("qlora", 12).options.quantizes_encoder
    assert spec_from_preset("lora", 12, targets="q, v").options.targets == ("q", "v")  # text as on a command line


def test_a_method_is_registered_in_one_call(tiny_sam, monkeypatch):
    monkeypatch.setattr(methods_module, "METHODS", dict(METHODS))

    @dataclasses.dataclass(frozen=True)
    class NormBiasOptions(MethodOptions):
        label = "Norm bias"
        only_first: bool = dataclasses.field(default=False, metadata={"help": "only the first norm"})

    register_method(
        "norm_bias",
        "Biases of the LayerNorms.",
        NormBiasOptions,
        selects=lambda name, target: target.in_selected_part(name, target.layout.norms) and name.endswith(".bias"),
        trains_decoder=False,
    )
    spec = make_spec("norm_bias", TINY.depth, blocks="last 1")
    handle = attach(tiny_sam, spec)
    assert handle.trainable_names == ["image_encoder.blocks.3.norm1.bias", "image_encoder.blocks.3.norm2.bias"]
    assert PeftSpec.from_json(spec.to_json()) == spec


# What version 0.1.0 wrote into adapter files for each preset on vit_b (12 blocks), and for the
# named architectures: new files must write the same text, so old and new adapters hash alike.
ALL = list(range(12))
LATE = list(range(6, 12))
LORA = {"alpha": None, "quantize": False, "rank": 32, "targets": ["q", "v"]}
SPEC_JSON = {
    "full_ft": ("full_ft", ALL, {}),
    "freeze_encoder": ("freeze_encoder", [], {}),
    "ln_tune": ("ln_tune", ALL, {}),
    "bias_tune": ("bias_tune", ALL, {}),
    "attn_tune": ("attn_tune", ALL, {}),
    "ssf": ("ssf", ALL, {}),
    "fact": ("fact", ALL, {"dropout": 0.1, "rank": 16}),
    "lora": ("lora", ALL, LORA),
    "qlora": ("lora", ALL, {**LORA, "quantize": True}),
    "adaptformer": ("adaptformer", ALL, {"dropout": 0.0, "projection_size": 64}),
    "late_lora": ("lora", LATE, {**LORA, "targets": ["q", "k", "v", "mlp"]}),
    "late_ft": ("full_ft", LATE, {}),
    "decoder_lora": ("decoder_lora", [], {"alpha": None, "rank": 16, "targets": ["q", "v"]}),
}
VIT_B_JSON = (
    '{"decoder_depth": 2, "decoder_mlp_dim": 2048, "decoder_num_heads": 8, "depth": 12, "embed_dim": 768, '
    '"global_attn_indexes": [2, 5, 8, 11], "img_size": 1024, "iou_head_hidden_dim": 256, "mlp_ratio": 4.0, '
    '"name": "vit_b", "num_heads": 12, "num_multimask_outputs": 3, "patch_size": 16, "prompt_embed_dim": 256, '
    '"window_size": 14}'
)


@pytest.mark.parametrize("preset", sorted(SPEC_JSON))
def test_the_spec_json_is_what_earlier_versions_wrote(preset):
    method, blocks, options = SPEC_JSON[preset]
    text = json.dumps({"blocks": blocks, "method": method, "options": options, "preset": preset}, sort_keys=True)
    assert spec_from_preset(preset, 12).to_json() == text
    assert PeftSpec.from_json(text).to_json() == text


def test_the_architecture_json_is_what_earlier_versions_wrote():
    assert NAMED_ARCHITECTURES["vit_b"].to_json() == VIT_B_JSON
    for architecture in NAMED_ARCHITECTURES.values():
        record = json.loads(architecture.to_json())
        # an old record is a ViT: only the families added later write their name
        assert record.get("family", "vit") == architecture.family
        assert ("family" in record) == (architecture.family != "vit")
        assert architecture_from_json(architecture.to_json()) == architecture


def test_an_adapter_written_by_an_earlier_version_loads_with_its_identity(tiny_model, tmp_path):
    from safetensors.torch import save_file

    from napari_sam_peft.core.peft.adapter_format import content_hash

    handle = attach(tiny_model.sam, spec_from_preset("freeze_encoder", TINY.depth))
    tensors = {name: value + 0.5 for name, value in handle.trained_tensors().items()}
    handle.detach()
    metadata = {  # as version 0.1.0 wrote them
        "format": "napari-sam-peft/adapter",
        "format_version": "1",
        "spec": '{"blocks": [], "method": "freeze_encoder", "options": {}, "preset": "freeze_encoder"}',
        "base_model": json.dumps(tiny_model.identity.to_dict(), sort_keys=True),
        "architecture": TINY.to_json(),
        "parent_adapter": "",
        "training_snapshot": "",
        "metrics": "{}",
        "created": "2026-01-01T00:00:00+00:00",
        "package_version": "0.1.0",
    }
    stored = content_hash(metadata, tensors)
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={**metadata, "content_hash": stored})
    adapter = Adapter.load(tmp_path / "old.safetensors")
    assert adapter.identity == stored and adapter.architecture == TINY
    adapter.attach_to(tiny_model)
    iou_token = "mask_decoder.iou_token.weight"
    assert torch.equal(tiny_model.sam.state_dict()[iou_token], tensors[iou_token])
