"""SAM 2.1 (Hiera) models: built from the ``sam2`` package's classes, read back from checkpoints, loaded
by micro_sam's names with one-line refusals offline and for the wrong weights."""

from __future__ import annotations

import socket

import pytest
import torch

from napari_sam_peft.cli import main
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.errors import InvalidCheckpointError, ModelNotAvailableError
from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset
from napari_sam_peft.core.sam.architecture import TINY, build_sam
from napari_sam_peft.core.sam.hiera_architecture import (
    HVIT_B,
    HVIT_L,
    HVIT_S,
    HVIT_T,
    TINY_HIERA,
    infer_hiera_architecture,
)
from napari_sam_peft.core.sam.loading import load_model, model_identity
from napari_sam_peft.core.sam.registry import family_of
from napari_sam_peft.core.sam.sam2_model import BASE_CONFIG, config_overrides
from napari_sam_peft.core.sam.sam2_registry import sam2_weights_path
from tests.conftest import sam_forward


def test_tiny_sam2_is_meta_s_sam2base_with_a_hiera_encoder(tiny_sam2):
    from sam2.modeling.sam2_base import SAM2Base

    assert isinstance(tiny_sam2, SAM2Base)
    assert family_of(tiny_sam2).name == "hiera"
    features = tiny_sam2.image_encoder.backbone(torch.rand(1, 3, 128, 128))  # Meta's forward
    assert features["vision_features"].shape == (1, 32, 8, 8)  # 1/16 of the input, prompt_embed_dim wide
    assert [f.shape[-1] for f in features["backbone_fpn"]] == [32, 16, 8]  # the decoder's high-res features


@pytest.mark.parametrize("architecture", [HVIT_T, HVIT_S, HVIT_B, HVIT_L, TINY_HIERA], ids=lambda a: a.name)
def test_the_architecture_is_read_back_from_the_weights(architecture):
    state = build_sam(architecture, device="meta").state_dict()
    inferred = infer_hiera_architecture(state)
    assert inferred == architecture and inferred.name == architecture.name


def test_hvit_t_has_sam2_1_tinys_parameter_count():
    # Meta's model card: SAM 2.1 Hiera tiny, 38.9 M parameters
    assert sum(p.numel() for p in build_sam(HVIT_T, device="meta").parameters()) == 38_962_498


def test_a_meta_checkpoint_file_loads_weights_only_to_the_same_outputs(tiny_sam2, tmp_path):
    path = tmp_path / "sam2.1_hiera_tiny_test.pt"
    torch.save({"model": tiny_sam2.state_dict()}, path)  # Meta's layout
    loaded = load_model(path, device="cpu")
    assert loaded.architecture == TINY_HIERA
    assert loaded.identity.content_hash == model_identity(tiny_sam2, "x").content_hash
    expected, got = sam_forward(tiny_sam2, 128), sam_forward(loaded.sam, 128)
    torch.testing.assert_close(got["masks"], expected["masks"], rtol=0, atol=0)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty cache and no network: every download attempt fails as offline."""

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (blocked by the test)")

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return tmp_path


def test_an_hvit_name_offline_names_the_file_to_place(offline_cache):
    with pytest.raises(ModelNotAvailableError) as info:
        load_model("hvit_t", device="cpu")
    message = str(info.value)
    assert str(sam2_weights_path("hvit_t")) in message
    assert str(offline_cache / "cache") in message
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt" in message
    assert "\n" not in message


@pytest.fixture
def store(tmp_path):
    sample = make_sample("cells", seed=1)
    store = AnnotationStore.create(tmp_path / "cells.sampeft.zarr")
    store.add_labels(sample.image, sample.labels, split="train")
    return store.path


def _train(store, model: str) -> list[str]:
    return ["train", str(store), "--model", model, "--preset", "late_lora", "--steps", "1"]


def _one_line_exit_2(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_train_on_an_hvit_name_offline_is_one_line_exit_2(offline_cache, store, capsys):
    err = _one_line_exit_2(capsys, _train(store, "hvit_t"))
    assert str(sam2_weights_path("hvit_t")) in err


def test_a_sam1_checkpoint_placed_as_hvit_t_is_refused_in_one_line(offline_cache, store, capsys):
    path = sam2_weights_path("hvit_t")
    path.parent.mkdir(parents=True)
    torch.save(build_sam(TINY).state_dict(), path)
    err = _one_line_exit_2(capsys, _train(store, "hvit_t"))
    assert "holds a SAM 1 checkpoint (vit encoder), not SAM 2.1's Hiera" in err
    assert "sam2.1_hiera_tiny.pt" in err


def test_another_sam2_size_placed_as_hvit_t_is_refused(offline_cache, tiny_sam2):
    path = sam2_weights_path("hvit_t")
    path.parent.mkdir(parents=True)
    torch.save({"model": tiny_sam2.state_dict()}, path)
    with pytest.raises(InvalidCheckpointError, match=r"another SAM 2.1 size \(tiny_hiera\)"):
        load_model("hvit_t", device="cpu")


def test_training_the_instance_decoder_on_sam2_is_refused_in_one_line(tiny_sam2, tmp_path, store, capsys):
    path = tmp_path / "tiny_sam2.pt"
    torch.save({"model": tiny_sam2.state_dict()}, path)
    err = _one_line_exit_2(capsys, [*_train(store, str(path)), "--with-decoder"])
    assert "instance decoder (AIS) does not read" in err and "leave out --with-decoder" in err


def _trained_adapter(tiny_sam2, tmp_path):
    """A LoRA adapter on the tiny SAM 2.1 (its tensors moved off their start, as training would) and the
    outputs of the model carrying it."""
    base = tmp_path / "tiny_sam2.pt"
    torch.save({"model": tiny_sam2.state_dict()}, base)
    model = load_model(base, device="cpu")
    handle = attach(model.sam, spec_from_preset("late_lora", TINY_HIERA.depth))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    expected = sam_forward(model.sam, 128)
    path = Adapter.from_attached(handle, model).save(tmp_path / "lora.safetensors")
    return base, path, expected


def test_export_writes_a_merged_sam2_checkpoint_that_sam2s_builder_loads(tiny_sam2, tmp_path, capsys):
    from sam2.build_sam import build_sam2

    base, adapter, expected = _trained_adapter(tiny_sam2, tmp_path)
    out = tmp_path / "merged.pt"
    assert main(["export", str(adapter), "--model", str(base), "--out", str(out)]) == 0
    assert "get_sam2_model(model_type='tiny_hiera'" in capsys.readouterr().err
    rebuilt = build_sam2(
        BASE_CONFIG, ckpt_path=str(out), device="cpu", hydra_overrides_extra=config_overrides(TINY_HIERA)
    )
    torch.testing.assert_close(sam_forward(rebuilt, 128)["masks"], expected["masks"], rtol=0, atol=1e-4)


def test_bioimageio_export_of_a_sam2_adapter_is_refused_in_one_line(tiny_sam2, tmp_path, capsys):
    base, adapter, _ = _trained_adapter(tiny_sam2, tmp_path)
    err = _one_line_exit_2(
        capsys, ["export", str(adapter), "--model", str(base), "--bioimageio", str(tmp_path / "p.zip")]
    )
    assert "holds a SAM 1 model" in err and "--out MERGED.pt" in err
    assert not (tmp_path / "p.zip").exists()
