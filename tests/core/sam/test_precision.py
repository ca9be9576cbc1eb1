"""Precision from the hardware: auto picks what the machine computes natively; emulation is refused."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.sam import precision as precision_module
from napari_sam_peft.core.sam.precision import (
    PrecisionNotAvailableError,
    native_bf16,
    resolve_precision,
    supported_precisions,
)

CPU = torch.device("cpu")


@pytest.fixture(params=[True, False], ids=["cpu_with_bf16", "cpu_without_bf16"])
def cpu_bf16(request, monkeypatch):
    """This CPU as one with native bfloat16 (AVX512-BF16) and as one without."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: request.param)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return request.param


def test_auto_takes_bfloat16_only_where_the_cpu_computes_it(cpu_bf16):
    chosen = resolve_precision("auto", CPU)
    assert chosen.name == ("bf16" if cpu_bf16 else "fp32")
    assert chosen.reason.startswith("auto: ")
    assert ("natively" in chosen.reason) == cpu_bf16
    assert supported_precisions(CPU) == (["fp32", "bf16"] if cpu_bf16 else ["fp32"])


def test_bf16_without_native_support_is_one_line_saying_what_the_machine_supports(cpu_bf16):
    if cpu_bf16:
        assert resolve_precision("bf16", CPU).name == "bf16"
        return
    with pytest.raises(PrecisionNotAvailableError) as error:
        resolve_precision("bf16", CPU)
    message = str(error.value)
    assert "\n" not in message and "emulated" in message
    assert "This machine supports: fp32. Use --precision auto." in message


def test_fp16_on_a_cpu_is_refused(cpu_bf16):
    with pytest.raises(PrecisionNotAvailableError, match="fp16 is not native on this CPU"):
        resolve_precision("fp16", CPU)


def test_an_unknown_precision_lists_the_choices():
    with pytest.raises(PrecisionNotAvailableError, match="choose one of auto, fp32, bf16, fp16"):
        resolve_precision("int8", CPU)


def test_apple_gpus_stay_in_float32():
    mps = torch.device("mps")
    assert not native_bf16(mps)
    chosen = resolve_precision("auto", mps)
    assert chosen.name == "fp32" and "Apple" in chosen.reason
    with pytest.raises(PrecisionNotAvailableError, match="supports: fp32"):
        resolve_precision("bf16", mps)


def test_older_cuda_gpus_take_float16_with_a_gradient_scaler(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    chosen = resolve_precision("auto", torch.device("cuda"))
    assert (chosen.name, chosen.needs_grad_scaler) == ("fp16", True)
    assert "Tesla T4" in chosen.reason
    with pytest.raises(PrecisionNotAvailableError, match="supports: fp32, fp16"):
        resolve_precision("bf16", torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert resolve_precision("auto", torch.device("cuda")).name == "bf16"


def test_autocast_computes_in_the_chosen_dtype_and_fp32_leaves_the_forward_alone():
    layer = torch.nn.Linear(4, 4)
    x = torch.rand(2, 4)
    bf16 = precision_module.Precision("bf16", "cpu")
    with bf16.autocast():
        assert layer(x).dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32  # the weights (and a saved adapter) stay float32
    with precision_module.FP32_CPU.autocast():
        assert layer(x).dtype == torch.float32
