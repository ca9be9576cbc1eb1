"""Precision by measurement: auto takes what a probe of the model found fastest among the precisions the
hardware computes natively, and only where its numbers agree with float32's; emulation is refused."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.sam import precision as precision_module
from napari_sam_peft.core.sam.precision import (
    PrecisionFigures,
    PrecisionNotAvailableError,
    ProbeResult,
    choose,
    native_bf16,
    resolve_precision,
    supported_precisions,
)

CPU = torch.device("cpu")


def figures(fp32: float, bf16: float | None, agreement: float = 0.9999, fp16: float | None = None) -> ProbeResult:
    """Fake probe figures: seconds per training unit (embedding takes a tenth of it)."""
    rows = [PrecisionFigures("fp32", fp32 / 10, fp32)]
    if bf16 is not None:
        rows.append(PrecisionFigures("bf16", bf16 / 10, bf16, agreement))
    if fp16 is not None:
        rows.append(PrecisionFigures("fp16", fp16 / 10, fp16, 0.9999))
    return ProbeResult("fake", tuple(rows))


@pytest.fixture(params=[True, False], ids=["cpu_with_bf16", "cpu_without_bf16"])
def cpu_bf16(request, monkeypatch):
    """This CPU as one with native bfloat16 (AVX512-BF16) and as one without."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: request.param)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    return request.param


@pytest.fixture
def with_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


def never_called():
    raise AssertionError("the probe ran where there was nothing to choose")


def test_a_cpu_without_native_bfloat16_stays_in_float32_without_probing(cpu_bf16):
    if cpu_bf16:
        pytest.skip("the other case")
    chosen = resolve_precision("auto", CPU, never_called)
    assert chosen.name == "fp32"
    assert chosen.reason == "auto: this CPU (no AVX512-BF16 or AMX) has no native bfloat16"
    assert supported_precisions(CPU) == ["fp32"]


@pytest.mark.parametrize(
    ("probe", "use", "expected", "because"),
    [
        (figures(fp32=0.82, bf16=0.30), "train", "bf16", "faster than fp32"),
        (figures(fp32=0.82, bf16=48.7), "train", "fp32", "no reduced precision is faster"),  # issue 23's Xeon
        (figures(fp32=0.82, bf16=0.78), "train", "fp32", "no reduced precision is faster"),  # within noise
        (figures(fp32=0.82, bf16=0.30, agreement=0.9), "train", "fp32", "too far from float32"),
        (figures(fp32=0.82, bf16=float("nan"), agreement=0.0), "embed", "fp32", "too far from float32"),
        (figures(fp32=0.82, bf16=0.30), "embed", "bf16", "faster than fp32"),
    ],
    ids=["faster", "slower", "barely_faster", "numerically_off", "not_finite", "embedding"],
)
def test_auto_takes_the_fastest_precision_that_keeps_the_numbers(with_bf16, probe, use, expected, because):
    chosen = resolve_precision("auto", CPU, lambda: probe, use=use)
    assert chosen.name == expected
    assert chosen.reason.startswith("auto: ") and because in chosen.reason
    assert chosen.probe.startswith("probe: fp32 ")  # the figures behind the choice, for the widgets
    assert chosen.warning == ""


def test_the_choice_compares_the_figures_of_its_use():
    probe = ProbeResult("fake", (PrecisionFigures("fp32", 0.1, 0.5), PrecisionFigures("bf16", 0.03, 0.9, 0.9999)))
    assert choose(probe, "embed")[0] == "bf16"  # its encoder block is fast, its decoder backward is not
    assert choose(probe, "train")[0] == "fp32"
    untimed = ProbeResult("fake", (PrecisionFigures("fp32", 0.1, 0.5), PrecisionFigures("bf16", 0.9, None, 1.0)))
    assert choose(untimed, "train")[0] == "fp32"  # the probe skipped training, the block being 9x slower
    assert "bf16 >3x" in choose(untimed, "train")[1]
    with pytest.raises(ValueError, match="use must be one of"):
        choose(probe, "infer")


def test_on_a_gpu_the_fastest_of_bfloat16_and_float16_wins():
    assert choose(figures(fp32=1.0, bf16=0.5, fp16=0.4), "train")[0] == "fp16"
    assert choose(figures(fp32=1.0, bf16=0.4, fp16=0.5), "train")[0] == "bf16"


def test_without_a_probe_auto_stays_in_float32(with_bf16):
    chosen = resolve_precision("auto", CPU)
    assert chosen.name == "fp32" and "until a probe of the model measures this CPU" in chosen.reason


def test_bf16_asked_for_runs_in_bf16_with_a_warning_where_it_measured_slower(with_bf16):
    slow = resolve_precision("bf16", CPU, lambda: figures(fp32=0.82, bf16=48.7))
    assert slow.name == "bf16"
    assert slow.warning.startswith("bf16 measured 59.4x slower than fp32 on this machine")
    assert slow.reason == f"given; {slow.warning}"
    fast = resolve_precision("bf16", CPU, lambda: figures(fp32=0.82, bf16=0.3))
    assert (fast.name, fast.warning, fast.reason) == ("bf16", "", "given")
    assert resolve_precision("fp32", CPU, never_called).reason == "given"


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
    chosen = resolve_precision("auto", mps, never_called)
    assert chosen.name == "fp32" and "Apple" in chosen.reason
    with pytest.raises(PrecisionNotAvailableError, match="supports: fp32"):
        resolve_precision("bf16", mps)


def test_older_cuda_gpus_offer_float16_and_newer_ones_bfloat16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    cuda = torch.device("cuda")
    assert supported_precisions(cuda) == ["fp32", "fp16"]
    chosen = resolve_precision("auto", cuda, lambda: figures(fp32=1.0, bf16=None, fp16=0.4))
    assert (chosen.name, chosen.needs_grad_scaler) == ("fp16", True)
    with pytest.raises(PrecisionNotAvailableError, match="supports: fp32, fp16"):
        resolve_precision("bf16", cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert supported_precisions(cuda) == ["fp32", "bf16", "fp16"]
    assert resolve_precision("auto", cuda, lambda: figures(fp32=1.0, bf16=0.3, fp16=0.4)).name == "bf16"


def test_autocast_computes_in_the_chosen_dtype_and_fp32_leaves_the_forward_alone():
    layer = torch.nn.Linear(4, 4)
    x = torch.rand(2, 4)
    bf16 = precision_module.Precision("bf16", "cpu")
    with bf16.autocast():
        assert layer(x).dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32  # the weights (and a saved adapter) stay float32
    with precision_module.FP32_CPU.autocast():
        assert layer(x).dtype == torch.float32


def test_a_frozen_encoder_step_is_decided_by_the_decoder_pass_alone():
    from napari_sam_peft.core.peft import spec_from_preset
    from napari_sam_peft.core.training.loop import step_use

    # bfloat16 speeds up the encoder block but not the decoder pass (a small embedding grid)
    probe = ProbeResult(
        "fake", (PrecisionFigures("fp32", 0.1, 0.5, 1.0, 0.05), PrecisionFigures("bf16", 0.03, 0.3, 0.9999, 0.06))
    )
    assert [step_use(spec_from_preset(p, 12)) for p in ("freeze_encoder", "decoder_lora")] == ["decoder"] * 2
    assert [step_use(spec_from_preset(p, 12)) for p in ("late_lora", "late_ft", "qlora")] == ["train"] * 3
    assert choose(probe, "decoder")[0] == "fp32" and choose(probe, "train")[0] == "bf16"
