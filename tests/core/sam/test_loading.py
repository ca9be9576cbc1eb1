"""Loading models: files round-trip with their identity, registry names fail clearly offline."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from napari_sam_peft.core.errors import InvalidCheckpointError, ModelNotAvailableError
from napari_sam_peft.core.sam.architecture import TINY
from napari_sam_peft.core.sam.loading import load_model, model_identity, save_model
from tests.conftest import sam_forward


def test_small_model_round_trips_through_a_safetensors_file(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "tiny.safetensors")
    loaded = load_model(path, device="cpu")

    assert loaded.identity == tiny_model.identity
    assert loaded.architecture == TINY
    before = sam_forward(tiny_model.sam, TINY.img_size)
    after = sam_forward(loaded.sam, TINY.img_size)
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)


def test_identity_follows_the_weights_not_the_file(tiny_model, tmp_path):
    path = save_model(tiny_model, tmp_path / "a.safetensors")
    with torch.no_grad():
        tiny_model.sam.mask_decoder.iou_token.weight.add_(1.0)
    changed = model_identity(tiny_model.sam, "tiny")
    assert changed.content_hash != load_model(path, device="cpu").identity.content_hash


def test_original_sam_pth_loads_with_inferred_architecture(tiny_sam, tmp_path):
    path = tmp_path / "sam_tiny.pth"
    torch.save(tiny_sam.state_dict(), path)
    loaded = load_model(path, device="cpu")
    assert loaded.architecture.embed_dim == TINY.embed_dim
    assert loaded.architecture.global_attn_indexes == TINY.global_attn_indexes
    assert loaded.identity.name == "sam_tiny"
    assert loaded.identity.content_hash == model_identity(tiny_sam, "x").content_hash


def test_micro_sam_training_checkpoint_loads(tiny_sam, tmp_path):
    # micro_sam / torch_em save {"model_state": {"sam.<key>": tensor, ...}, ...}.
    state = {f"sam.{k}": v for k, v in tiny_sam.state_dict().items()}
    path = tmp_path / "best.pt"
    torch.save({"model_state": state, "iteration": 100, "best_metric": 0.1}, path)
    loaded = load_model(path, device="cpu")
    assert loaded.identity.content_hash == model_identity(tiny_sam, "x").content_hash


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/napari-sam-peft-pwned"),))


def test_a_checkpoint_with_pickled_code_is_refused_without_running_it(tmp_path):
    marker = Path("/tmp/napari-sam-peft-pwned")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pth"
    torch.save({"model_state": {}, "payload": _Payload()}, path)
    with pytest.raises(InvalidCheckpointError, match="does not run code"):
        load_model(path, device="cpu")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable"),
        (b"this is not a checkpoint", "not a readable"),
    ],
)
def test_garbage_files_give_a_clear_error(tmp_path, content, message):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(InvalidCheckpointError, match=message):
        load_model(path, device="cpu")


def test_a_state_dict_of_something_else_is_not_taken_for_sam(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, path)
    with pytest.raises(InvalidCheckpointError, match="not a SAM checkpoint"):
        load_model(path, device="cpu")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(InvalidCheckpointError, match="No model file"):
        load_model(tmp_path / "nowhere.pth", device="cpu")


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(ModelNotAvailableError, match="vit_b_lm"):
        load_model("vit_q", device="cpu")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (blocked by the test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_registry_model_without_cache_or_network_names_file_and_folder(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "cache"))
    with pytest.raises(ModelNotAvailableError) as info:
        load_model("vit_b_lm", device="cpu")
    message = str(info.value)
    assert "vit_b_lm" in message
    assert str(tmp_path / "cache" / "models" / "vit_b_lm") in message
    assert "https://" in message  # where to get it by hand
    assert "Traceback" not in message


def test_registry_model_found_in_cache_loads_without_network(tmp_path, monkeypatch, no_network, tiny_sam):
    cache = tmp_path / "cache" / "models"
    cache.mkdir(parents=True)
    torch.save(tiny_sam.state_dict(), cache / "vit_b_lm")
    monkeypatch.setenv("MICROSAM_CACHEDIR", str(tmp_path / "cache"))
    loaded = load_model("vit_b_lm", device="cpu")
    assert loaded.identity.name == "vit_b_lm"
    assert loaded.identity.content_hash == model_identity(tiny_sam, "x").content_hash


def test_demo_model_is_bundled_and_loads_offline():
    loaded = load_model("demo", device="cpu")
    assert loaded.identity.name == "demo"
    assert loaded.architecture.img_size == 256
    assert sum(p.numel() for p in loaded.sam.parameters()) < 5_000_000
