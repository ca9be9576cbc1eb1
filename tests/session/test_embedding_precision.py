"""Embedding in bfloat16 where the hardware has it and the probe found it faster: the same masks as float32,
separate cache entries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.annotation.stage_inputs import CacheEmbeddingSource
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.peft import spec_from_preset
from napari_sam_peft.core.sam import precision_probe
from napari_sam_peft.core.sam.loading import load_model
from napari_sam_peft.core.sam.precision import PrecisionFigures, PrecisionNotAvailableError, ProbeResult
from napari_sam_peft.core.sam.precision_probe import probe_key
from napari_sam_peft.core.sam.vit import TINY
from napari_sam_peft.session import AnnotatorSession
from tests.core.annotation.test_embeddings import _lora_adapter


@pytest.fixture
def native_bf16(monkeypatch, tmp_path):
    """A CPU that computes bfloat16 natively and fast: its precision probe finds bfloat16 twice as fast
    (this one may only emulate it: same numbers, slower)."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setenv("NAPARI_SAM_PEFT_PROBE_CACHE", str(tmp_path / "fast_bf16_probe.json"))

    def fast_bf16(sam, candidates):
        rows = (PrecisionFigures("fp32", 0.2, 1.0), PrecisionFigures("bf16", 0.1, 0.5, 0.9999))
        return ProbeResult(probe_key(sam, torch.device("cpu")), rows)

    monkeypatch.setattr(precision_probe, "measure", fast_bf16)


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


def _prompts(labels: np.ndarray, points: bool) -> list[ObjectPrompts]:
    prompts = []
    for label in np.unique(labels[labels > 0]):
        rows, cols = np.nonzero(labels == label)
        prompts.append(ObjectPrompts(box=[rows.min(), cols.min(), rows.max(), cols.max()]))
        if points:
            prompts.append(ObjectPrompts(points=np.array([[rows.mean(), cols.mean()]]), labels=[1]))
    return prompts


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


# LiteMedSAM was trained on boxes; its point masks are unreliable in float32 already (held-out Point
# score 0.000, docs/finetune_results.md) and flip on small changes, so it is compared on boxes only.
@pytest.mark.parametrize(
    ("name", "points"), [("demo", True), pytest.param("lite_medsam", False, marks=pytest.mark.slow)]
)
def test_bfloat16_embeddings_give_the_masks_of_float32_on_the_sample_data(native_bf16, tmp_path, name, points):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path))
    session.model.load(name, device="cpu")
    assert session.model.precision.name == "bf16"  # auto, on a CPU where bfloat16 is native and measured faster
    ious = []
    for domain in ("cells", "nuclei"):  # one image of each (an emulated bfloat16 LiteMedSAM embedding: ~30 s)
        for seed in (0,):
            sample = make_sample(domain, seed=seed)
            prompts = _prompts(sample.labels, points)
            masks = {}
            for precision in ("fp32", "bf16"):
                session.model.set_precision(precision)
                _, embeddings = session.embeddings.compute(sample.image)
                masks[precision] = session.model.segment(embeddings, prompts)
            ious += [_iou(a, b) for a, b in zip(masks["fp32"], masks["bf16"], strict=True)]
    assert len(ious) > 25 and np.mean(ious) >= 0.98, (len(ious), np.mean(ious), min(ious))
    assert min(ious) < 1.0  # it did embed in bfloat16


def test_each_precision_has_its_own_cache_entries(native_bf16, tiny_model, tmp_path):
    cache = EmbeddingCache(tmp_path)
    session = AnnotatorSession(cache=cache)
    session.model.set_base(tiny_model)
    image = make_sample("cells", seed=0, shape=(64, 64)).image
    key_bf16, bf16 = session.embeddings.compute(image)
    session.model.set_precision("fp32")
    key_fp32, fp32 = session.embeddings.compute(image)
    assert (key_bf16.precision, key_fp32.precision) == ("bf16", "fp32") and key_bf16.name != key_fp32.name
    assert (cache.computed, cache.reused) == (2, 0)  # a float32 session is never served bfloat16's entry
    assert bf16["features"].dtype == fp32["features"].dtype == np.float32
    assert not np.array_equal(bf16["features"], fp32["features"])
    session.model.set_precision("auto")
    session.embeddings.compute(image)
    assert (cache.computed, cache.reused) == (2, 1)


def test_reembedding_from_the_kept_input_in_bfloat16_equals_a_full_bfloat16_embedding(
    native_bf16, tiny_model, tmp_path
):
    image = make_sample("cells", seed=1, shape=(64, 64)).image
    adapter = _lora_adapter(tiny_model, 1, "late_lora", "last 1")
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "kept"))
    session.model.set_base(tiny_model)
    session.embeddings.prepare_reloads(TINY.depth)
    session.embeddings.compute(image)  # keeps the last block's input (in bfloat16)
    session.model.set_adapter(adapter)
    _, reembedded = session.embeddings.compute(image)
    assert session.embeddings.reembedded_from_stage == 1
    session.model.set_adapter(None)
    fresh = AnnotatorSession(cache=EmbeddingCache(tmp_path / "fresh"))
    fresh.model.set_base(tiny_model)
    fresh.model.set_adapter(adapter)
    _, full = fresh.embeddings.compute(image)
    fresh.model.set_adapter(None)
    np.testing.assert_allclose(reembedded["features"], full["features"], rtol=0, atol=1e-6)


def test_training_in_bfloat16_reuses_the_annotators_bfloat16_embeddings_only(native_bf16, tiny_model, tmp_path):
    cache = EmbeddingCache(tmp_path)
    session = AnnotatorSession(cache=cache)
    session.model.set_base(tiny_model)
    image = make_sample("cells", seed=2, shape=(64, 64)).image
    _, embeddings = session.embeddings.compute(image)
    same = CacheEmbeddingSource(cache, tiny_model, precision="bf16").get(image)
    assert same is not None and np.array_equal(same.numpy(), embeddings["features"])
    assert CacheEmbeddingSource(cache, tiny_model, precision="fp32").get(image) is None


def test_auto_embeds_in_float32_without_native_bfloat16_and_refuses_emulation(no_bf16, tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path))
    session.model.set_base(tiny_model)
    assert session.model.precision.name == "fp32" and "no native bfloat16" in session.model.precision.reason
    with pytest.raises(PrecisionNotAvailableError, match="This machine supports: fp32"):
        session.model.set_precision("bf16")
    assert session.model.precision.name == "fp32"


def test_training_a_frozen_encoder_in_bfloat16_puts_its_embeddings_in_the_cache(native_bf16, tmp_path):
    from napari_sam_peft.core.training.loop import TrainingConfig, train

    model = load_model("demo", device="cpu")
    sample = make_sample("cells", seed=3)
    cache = EmbeddingCache(tmp_path)
    source = CacheEmbeddingSource(cache, model, precision="bf16")
    spec = spec_from_preset("freeze_encoder", model.architecture.depth)
    config = TrainingConfig(steps=1, objects_per_image=2, sub_iterations=1, precision="auto")
    train(model, spec, [(sample.image, sample.labels)], (), config, embedding_source=source)
    session = AnnotatorSession(cache=cache)
    session.model.set_base(model)
    session.embeddings.compute(sample.image)
    assert (cache.computed, cache.reused) == (0, 1)  # the annotator opens what training embedded
