"""Automatic segmentation in the session: AIS with the live adapter's decoder, else AMG, and it says which."""

from __future__ import annotations

import numpy as np
import torch

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.instance import build_decoder, decoder_state, instance_segmentation
from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset
from napari_sam_peft.session import AnnotatorSession

IMAGE = make_sample("nuclei", 0, shape=(64, 64)).image


def _adapter(model, decoder: bool) -> Adapter:
    handle = attach(model.sam, spec_from_preset("freeze_encoder", model.architecture.depth))
    torch.manual_seed(1)
    state = decoder_state(build_decoder(model.sam)) if decoder else None
    adapter = Adapter.from_attached(handle, model, decoder=state)
    handle.detach()
    return adapter


def test_the_live_adapters_decoder_segments_and_a_reload_without_one_falls_back(tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(tiny_model)
    assert session.model.decoder.method == "amg"
    assert "AMG" in session.model.decoder.description and "instance decoder" in session.model.decoder.description

    with_decoder = _adapter(tiny_model, decoder=True)
    heard = []
    session.model.adapter_changed.connect(lambda change: heard.append(session.model.decoder.method))
    session.model.set_adapter(with_decoder)
    assert heard == ["ais"], "widgets must hear of the reload after the decoder is swapped"
    assert "live adapter" in session.model.decoder.description
    _, embeddings = session.embeddings.compute(IMAGE)
    labels = session.model.automatic(IMAGE, embeddings)
    expected = instance_segmentation(
        session.model.predictor, build_decoder(tiny_model.sam, with_decoder.decoder), IMAGE, embeddings
    )
    assert labels.shape == IMAGE.shape and np.array_equal(labels, expected)

    session.model.set_adapter(None)
    without = _adapter(tiny_model, decoder=False)
    session.model.set_adapter(with_decoder)
    session.model.set_adapter(without)
    assert (
        session.model.decoder.method == "amg"
        and "without the instance decoder" in session.model.decoder.description
    )
    session.model.set_adapter(None)


def test_uncertainty_is_a_score_with_its_reasons(tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(tiny_model)
    found = session.uncertainty(IMAGE)
    assert 0.0 <= found.score <= 1.0 and found.points == 16
    assert "predicted IoU" in found.why() and "stability" in found.why()


def test_ais_on_a_large_image_runs_tiled_like_its_embeddings(tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(tiny_model)
    session.model.set_adapter(_adapter(tiny_model, decoder=True))
    image = make_sample("nuclei", 0, shape=(200, 170)).image  # over twice the 64 px input: tiled
    assert session.model.tiling_for(image)[0] is not None
    key, embeddings = session.embeddings.compute(image)
    labels = session.model.automatic(image, embeddings)
    assert labels.shape == image.shape and labels.dtype == np.uint32
    session.model.set_adapter(None)


def test_an_image_and_a_volume_of_a_registry_model_both_use_its_decoder(tiny_model, tmp_path, monkeypatch):
    """A ``*_lm`` model's automatic segmentation is AIS with micro_sam's decoder, in 2D and in 3D (3D used to
    fall back to mask generation)."""
    import napari_sam_peft.core.instance as instance
    from napari_sam_peft.core.data.sample_volume import make_volume
    from napari_sam_peft.core.sam.loading import LoadedModel, ModelIdentity
    from napari_sam_peft.session.volume_annotator import VolumeAnnotator

    torch.manual_seed(2)
    stand_in = decoder_state(build_decoder(tiny_model.sam))  # micro_sam's decoder of "vit_t_lm", in its place
    fetched = []
    monkeypatch.setattr(instance, "registry_decoder_state", lambda name: fetched.append(name) or stand_in)
    model = LoadedModel(tiny_model.sam, ModelIdentity("vit_t_lm", "0" * 64), tiny_model.architecture, "vit_t_lm")
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(model)
    volume = make_volume(seed=0, shape=(8, 64, 64)).image
    annotator = VolumeAnnotator(session.model, session.embeddings, volume)
    labels_3d = annotator.automatic(points_per_side=2)  # the volume first: it must fetch the decoder itself
    assert fetched == ["vit_t_lm"] and session.model.decoder.method == "ais"
    _, embeddings = session.embeddings.compute(volume[1])
    labels_2d = session.model.automatic(volume[1], embeddings)
    expected = instance_segmentation(
        session.model.predictor, build_decoder(tiny_model.sam, stand_in), volume[1], embeddings
    )
    assert np.array_equal(labels_2d, expected) and labels_3d.shape == volume.shape
    assert fetched == ["vit_t_lm"]  # once
