"""The embedding cache: keyed by image, base model and adapter; reopening reads, never recomputes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset
from napari_sam_peft.core.sam.architecture import TINY
from napari_sam_peft.core.sam.loading import LoadedModel, model_identity
from napari_sam_peft.session import AnnotatorSession, NoModelError

IMAGE = make_sample("nuclei", seed=0, shape=(64, 64)).image


@pytest.fixture
def session(tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(tiny_model)
    return session


def _lora_adapter(model: LoadedModel, seed: int, preset: str = "lora", blocks: str | None = None) -> Adapter:
    """An adapter with random (non-zero) trained tensors."""
    handle = attach(model.sam, spec_from_preset(preset, TINY.depth, blocks=blocks, rank=2))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.5)
    adapter = Adapter.from_attached(handle, model)
    handle.detach()
    return adapter


def test_reopening_the_same_image_reads_the_cache(session):
    key1, first = session.embeddings.compute(IMAGE)
    key2, second = session.embeddings.compute(IMAGE.copy())
    assert key1 == key2
    assert (session.embeddings.cache.computed, session.embeddings.cache.reused) == (1, 1)
    np.testing.assert_array_equal(np.asarray(first["features"]), np.asarray(second["features"]))


def test_a_cache_entry_survives_a_new_session(session, tiny_model, tmp_path):
    session.embeddings.compute(IMAGE)
    fresh = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    fresh.model.set_base(tiny_model)
    fresh.embeddings.compute(IMAGE)
    assert (fresh.embeddings.cache.computed, fresh.embeddings.cache.reused) == (0, 1)


def test_attaching_an_adapter_changes_the_key_and_recomputes(session, tiny_model):
    first, second = _lora_adapter(tiny_model, seed=1), _lora_adapter(tiny_model, seed=2)
    base_key, base = session.embeddings.compute(IMAGE)
    session.model.set_adapter(first)
    adapted_key, adapted = session.embeddings.compute(IMAGE)

    assert adapted_key != base_key
    assert adapted_key.adapter_key == first.identity
    assert session.embeddings.cache.computed == 2
    assert not np.allclose(np.asarray(base["features"]), np.asarray(adapted["features"]))

    session.model.set_adapter(second)  # same blocks adapted: re-embedded from the kept block input
    other_key, _ = session.embeddings.compute(IMAGE)
    assert other_key not in (base_key, adapted_key)
    assert (session.embeddings.cache.computed, session.embeddings.reembedded_from_stage) == (2, 1)

    session.model.set_adapter(None)  # back to the base model: its cached entry is valid again
    back_key, back = session.embeddings.compute(IMAGE)
    assert back_key == base_key and session.embeddings.cache.computed == 2
    np.testing.assert_array_equal(np.asarray(back["features"]), np.asarray(base["features"]))


def test_switching_the_adapter_changes_predictions_without_reloading_the_base(session, tiny_model):
    adapter = _lora_adapter(tiny_model, seed=3)
    sam_before = session.model.loaded.sam
    _, embeddings = session.embeddings.compute(IMAGE)
    prompts = [ObjectPrompts(points=[[30, 30]], labels=[1])]
    base_logits = _logits(session, embeddings, prompts)

    session.model.set_adapter(adapter)
    _, embeddings = session.embeddings.compute(IMAGE)
    assert session.model.loaded.sam is sam_before  # adapted in place, not reloaded
    assert not np.allclose(_logits(session, embeddings, prompts), base_logits)


def _logits(session, embeddings, prompts):
    from micro_sam.prompt_based_segmentation import segment_from_points

    _, _, logits = segment_from_points(
        session.model.predictor, prompts[0].points, prompts[0].labels, image_embeddings=embeddings, return_all=True
    )
    return logits


def test_a_changed_model_gets_new_embeddings(session, tmp_path):
    session.embeddings.compute(IMAGE)
    torch.manual_seed(7)
    from napari_sam_peft.core.sam.architecture import build_sam

    other = build_sam(TINY)
    session.model.set_base(LoadedModel(other, model_identity(other, "other"), TINY, "test"))
    session.embeddings.compute(IMAGE)
    assert session.embeddings.cache.computed == 2


def test_an_adapter_for_another_base_is_refused_and_the_current_one_stays(session, tiny_model):
    from napari_sam_peft.core.peft import AdapterMismatchError
    from napari_sam_peft.core.sam.architecture import build_sam

    good = _lora_adapter(tiny_model, seed=1)
    torch.manual_seed(5)
    other = build_sam(TINY)
    foreign = _lora_adapter(LoadedModel(other, model_identity(other, "other"), TINY, "t"), seed=1)
    session.model.set_adapter(good)
    with pytest.raises(AdapterMismatchError):
        session.model.set_adapter(foreign)
    assert session.model.adapter is good


def test_large_images_are_embedded_in_tiles(session):
    big = make_sample("cells", seed=1, shape=(200, 180)).image
    key, embeddings = session.embeddings.compute(big)
    assert key.tile_shape is not None
    mask = session.model.segment(embeddings, [ObjectPrompts(points=[[150, 120]], labels=[1])])[0]
    assert mask.shape == big.shape


def test_no_model_is_a_clear_error(tmp_path):
    with pytest.raises(NoModelError, match="Load model"):
        AnnotatorSession(cache=EmbeddingCache(tmp_path)).embeddings.compute(IMAGE)


def test_an_interrupted_write_is_not_taken_for_an_entry(session, tmp_path):
    key = session.embeddings.key(IMAGE)
    half = session.embeddings.cache.path(key)
    half.mkdir(parents=True)  # a folder without the "finished" attributes
    assert key not in session.embeddings.cache
    session.embeddings.compute(IMAGE)
    assert key in session.embeddings.cache and session.embeddings.cache.computed == 1


def test_segmenting_while_the_model_is_busy_fails_fast_instead_of_freezing(session):
    import threading

    from napari_sam_peft.session import SessionBusyError

    _, embeddings = session.embeddings.compute(IMAGE)
    held, release = threading.Event(), threading.Event()

    def long_work():
        with session.model.lock:
            held.set()
            release.wait(5)

    worker = threading.Thread(target=long_work)
    worker.start()
    held.wait(5)
    with pytest.raises(SessionBusyError, match="busy"):  # at once: the lock is held until release
        session.model.segment(embeddings, [ObjectPrompts(points=[[30, 30]], labels=[1])])
    release.set()
    worker.join()
    assert (
        session.model.segment(embeddings, [ObjectPrompts(points=[[30, 30]], labels=[1])])[0].shape == IMAGE.shape
    )


def test_reloading_an_adapter_runs_only_the_adapted_blocks_and_matches_a_full_run(session, tiny_model, tmp_path):
    first, second = (_lora_adapter(tiny_model, seed, "late_lora", "last 1") for seed in (1, 2))
    session.embeddings.prepare_reloads(TINY.depth)  # the Finetune widget's hint: keep the last block's input
    session.embeddings.compute(IMAGE)  # base, captures the block-3 input on the way
    session.model.set_adapter(first)
    _, fast = session.embeddings.compute(IMAGE)
    session.model.set_adapter(second)
    _, fast_second = session.embeddings.compute(IMAGE)
    assert (session.embeddings.cache.computed, session.embeddings.reembedded_from_stage) == (1, 2)
    session.model.set_adapter(None)

    fresh = AnnotatorSession(cache=EmbeddingCache(tmp_path / "fresh"))
    fresh.model.set_base(tiny_model)
    fresh.model.set_adapter(second)
    _, full = fresh.embeddings.compute(IMAGE)
    assert fresh.embeddings.reembedded_from_stage == 0
    np.testing.assert_allclose(np.asarray(fast_second["features"]), np.asarray(full["features"]), atol=1e-5)
    assert not np.allclose(np.asarray(fast["features"]), np.asarray(fast_second["features"]))


def test_a_decoder_only_adapter_reuses_the_base_embeddings(session, tiny_model):
    handle = attach(tiny_model.sam, spec_from_preset("decoder_lora", TINY.depth))
    adapter = Adapter.from_attached(handle, tiny_model)
    handle.detach()
    base_key, _ = session.embeddings.compute(IMAGE)
    session.model.set_adapter(adapter)
    key, _ = session.embeddings.compute(IMAGE)
    assert key == base_key and session.embeddings.cache.computed == 1
