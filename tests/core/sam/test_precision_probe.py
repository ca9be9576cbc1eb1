"""The precision probe: real figures of the model's own work, measured once and kept per machine and model."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.sam import precision_probe
from napari_sam_peft.core.sam.architecture import TINY, build_sam
from napari_sam_peft.core.sam.precision import AGREEMENT_MIN
from napari_sam_peft.core.sam.precision_probe import (
    ProbeCache,
    cached_probe,
    measure,
    model_probe,
    probe_key,
    process_threads,
)
from napari_sam_peft.core.sam.tiny_vit import TINY_VIT_TEST


@pytest.mark.parametrize("architecture", [TINY, TINY_VIT_TEST], ids=["vit", "tiny_vit"])
def test_the_probe_times_each_precision_on_copies_and_leaves_the_live_model_alone(architecture):
    torch.manual_seed(0)
    tiny_sam = build_sam(architecture)
    before = {name: (p.detach().clone(), p.requires_grad) for name, p in tiny_sam.named_parameters()}
    result = measure(tiny_sam, ["fp32", "bf16"])
    assert [f.name for f in result.figures] == ["fp32", "bf16"]
    fp32, bf16 = result.figures
    assert fp32.agreement == 1.0 and bf16.agreement >= AGREEMENT_MIN  # bfloat16 keeps SAM's numbers
    assert fp32.embed_s > 0 and fp32.train_s is not None and fp32.train_s > 0
    for name, p in tiny_sam.named_parameters():
        assert torch.equal(p, before[name][0]) and p.requires_grad == before[name][1]
        assert p.grad is None


def test_the_probe_runs_once_and_is_read_back_from_the_cache(tiny_sam, tmp_path, monkeypatch):
    cache = ProbeCache(tmp_path / "probe.json")
    assert cached_probe(tiny_sam, cache) is None  # never measures by itself
    calls = []
    real = precision_probe.measure
    monkeypatch.setattr(precision_probe, "measure", lambda sam, c: calls.append(c) or real(sam, c))
    first = model_probe(tiny_sam, cache)()
    second = model_probe(tiny_sam, cache)()  # a new process would read the same file
    assert len(calls) == 1 and first == second == cached_probe(tiny_sam, cache)
    assert first.key == probe_key(tiny_sam, torch.device("cpu"))
    assert "tiny" not in first.key and f"torch {torch.__version__}" in first.key


def test_the_key_names_machine_architecture_and_threads(tiny_sam, tiny_model):
    from napari_sam_peft.core.sam.architecture import DEMO

    key = probe_key(tiny_sam, torch.device("cpu"))
    assert f"{process_threads()} threads" in key
    assert key != probe_key(build_sam(DEMO), torch.device("cpu"))  # another architecture, its own figures


def test_the_key_is_the_same_on_the_gui_thread_and_on_a_worker_thread(tiny_sam):
    """OpenMP counts threads per thread: a GUI thread whose count differed read another key and missed the
    figures measured on a worker thread (the Finetune panel said "chosen when the run starts")."""
    import threading

    on_worker: list[str] = []
    worker = threading.Thread(target=lambda: on_worker.append(probe_key(tiny_sam, torch.device("cpu"))))
    worker.start()
    worker.join()
    previous = torch.get_num_threads()
    torch.set_num_threads(previous + 1)
    try:
        assert probe_key(tiny_sam, torch.device("cpu")) == on_worker[0]
    finally:
        torch.set_num_threads(previous)


def test_an_unreadable_cache_file_is_measured_again(tiny_sam, tmp_path):
    path = tmp_path / "probe.json"
    path.write_text("{not json")
    result = model_probe(tiny_sam, ProbeCache(path))()
    assert ProbeCache(path).get(result.key) == result  # the broken file was replaced


def test_the_cache_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_PEFT_PROBE_CACHE", str(tmp_path / "mine.json"))
    assert ProbeCache().path == tmp_path / "mine.json"
    monkeypatch.delenv("NAPARI_SAM_PEFT_PROBE_CACHE")
    monkeypatch.setenv("NAPARI_SAM_PEFT_CACHE", str(tmp_path / "cache"))
    assert ProbeCache().path == tmp_path / "cache" / "probe.json"
