"""QLoRA's 4-bit encoder: a clear error off CUDA or without bitsandbytes; on CUDA it trains and detaches."""

from __future__ import annotations

import builtins

import pytest
import torch

from napari_sam_peft.core.peft import QuantizationUnavailableError, attach, attached_to, spec_from_preset
from napari_sam_peft.core.peft.quantize import quantization_backend
from napari_sam_peft.core.sam.architecture import TINY, build_sam
from napari_sam_peft.core.sam.tiny_vit import TINY_VIT_TEST


def test_off_cuda_the_backend_says_to_use_lora():
    with pytest.raises(QuantizationUnavailableError, match="NVIDIA GPU.*on cpu.*'lora' preset"):
        quantization_backend(torch.device("cpu"))


def test_without_bitsandbytes_the_backend_says_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_bitsandbytes(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bitsandbytes)
    with pytest.raises(QuantizationUnavailableError, match=r"pip install 'napari-sam-peft\[qlora\]'"):
        quantization_backend(torch.device("cuda"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="QLoRA runs on CUDA machines")
def test_qlora_off_cuda_says_why_and_leaves_the_model_unchanged(tiny_sam):
    before = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    with pytest.raises(QuantizationUnavailableError, match="NVIDIA GPU.*'lora'"):
        attach(tiny_sam, spec_from_preset("qlora", TINY.depth))
    assert attached_to(tiny_sam) is None
    assert all(torch.equal(tiny_sam.state_dict()[k], v) for k, v in before.items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("architecture", [TINY, TINY_VIT_TEST], ids=["vit", "tiny_vit"])
def test_qlora_on_cuda_quantises_trains_and_detaches(architecture):
    pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    sam = build_sam(architecture).cuda()
    base = {k: v.clone() for k, v in sam.state_dict().items()}
    handle = attach(sam, spec_from_preset("qlora", architecture.depth))
    assert any("Linear4bit" in type(m).__name__ for m in sam.image_encoder.modules())
    sam.train()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, architecture.img_size, architecture.img_size, generator=generator).cuda()
    sam.image_encoder(image).mean().backward()
    encoder_lora = [n for n in handle.trainable_names if n.startswith("image_encoder.")]
    params = dict(sam.named_parameters())
    assert encoder_lora and all(params[n].grad is not None for n in encoder_lora)
    merged = handle.merged_state_dict()
    assert set(merged) == set(base)
    handle.detach()
    assert all(torch.equal(sam.state_dict()[k], v) for k, v in base.items())
