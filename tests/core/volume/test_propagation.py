"""Propagating an object through z and segmenting a volume automatically, on the demo model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.prompting import ObjectPrompts, segment_object
from napari_sam_peft.core.data.sample_volume import make_volume
from napari_sam_peft.core.volume.automatic import automatic_volume
from napari_sam_peft.core.volume.embed import embed_volume
from napari_sam_peft.core.volume.propagation import (
    NoSeedSliceError,
    PropagationSettings,
    StoppedError,
    projections_for,
    propagate,
    stop_slices,
)
from napari_sam_peft.core.volume.slice_features import VolumeFeatures
from napari_sam_peft.session import AnnotatorSession

pytestmark = [pytest.mark.slow, pytest.mark.volume]  # the demo model (a real, trained SAM)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    from napari_sam_peft.core.sam.loading import load_model

    sample = make_volume(seed=0)
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path_factory.mktemp("cache")))
    session.model.set_base(load_model("demo", device="cpu"))
    features = VolumeFeatures(sample.image.shape[0])
    embed_volume(features, lambda z: session.embeddings.compute_slice(sample.image, z)[1], lambda: 0)
    return sample, session, features


def _middle_box(labels: np.ndarray, label: int) -> tuple[int, ObjectPrompts]:
    """An object's middle slice and a box around it there (as a user would draw it)."""
    slices = np.flatnonzero((labels == label).any(axis=(1, 2)))
    z = int(slices[len(slices) // 2])
    rows, cols = np.nonzero(labels[z] == label)
    return z, ObjectPrompts(box=np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], float))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_a_box_on_the_middle_slice_propagates_through_the_object_and_stops_where_it_ends(embedded):
    sample, session, features = embedded
    predictor = session.model.predictor
    ious, inside = [], []
    for label in range(1, int(sample.labels.max()) + 1):
        truth = sample.labels == label
        z, prompts = _middle_box(sample.labels, label)
        seed = segment_object(predictor, features.slice_embeddings(z), prompts)
        result = propagate(predictor, features, {z: seed})
        spans = np.flatnonzero(truth.any(axis=(1, 2)))
        assert result.n_slices > 1 and result.seeds == (z,)
        assert result.n_slices <= len(spans) + 2, "it ran on past the object's end"
        ious.append(_iou(result.mask, truth))
        inside.append(result.mask[spans.min() : spans.max() + 1].sum() / result.mask.sum())
    assert np.mean(ious) > 0.75, ious  # the 3D objects match the truth (0.88 when written)
    assert np.mean(inside) > 0.9, inside  # and the masks stay within the objects' slices


def test_two_annotated_slices_fill_the_gap_and_a_negative_stop_slice_ends_it(embedded):
    sample, session, features = embedded
    predictor = session.model.predictor
    label = int(np.argmax(np.bincount(sample.labels.ravel())[1:])) + 1  # the largest nucleus
    truth = sample.labels == label
    spans = np.flatnonzero(truth.any(axis=(1, 2)))
    z0, z1 = int(spans[0]) + 1, int(spans[-1]) - 1
    seeds = {z: truth[z] for z in (z0, z1)}
    filled = propagate(predictor, features, seeds, PropagationSettings(projection="box"))
    assert filled.mask[z0 : z1 + 1].any(axis=(1, 2)).all()  # every slice between the two
    middle = (z0 + z1) // 2
    stopped = propagate(predictor, features, {middle: truth[middle], middle + 1: None})
    assert not stopped.mask[middle + 1 :].any() and stopped.z_range[1] == middle + 1
    assert stopped.mask[:middle].any()  # it still went down


def test_stopping_a_propagation_changes_nothing_and_no_seed_says_what_to_do(embedded):
    sample, session, features = embedded
    z, prompts = _middle_box(sample.labels, 1)
    seed = segment_object(session.model.predictor, features.slice_embeddings(z), prompts)
    with pytest.raises(StoppedError, match="nothing was changed"):
        propagate(session.model.predictor, features, {z: seed}, should_stop=lambda: True)
    with pytest.raises(NoSeedSliceError, match=r"Shift\+S"):
        propagate(session.model.predictor, features, {z: np.zeros_like(seed)})
    # the demo model's embedding grid is 32 x 32: micro_sam's mask prompts do not fit it
    assert projections_for(session.model.predictor.model) == ("box", "points", "single_point")
    with pytest.raises(ValueError, match="choose one of box, points, single_point"):
        propagate(session.model.predictor, features, {z: seed}, PropagationSettings(projection="mask"))


def test_automatic_3d_merges_the_slices_objects_across_z(embedded):
    sample, session, features = embedded
    done = []
    predictor = session.model.predictor
    labels = automatic_volume(
        predictor, None, sample.image, features, points_per_side=8, progress=lambda *a: done.append(a)
    )
    assert labels.shape == sample.labels.shape and done[-1] == (features.n_slices, features.n_slices)
    found = [label for label in np.unique(labels) if label]
    matched, spans = [], []
    for true_label in range(1, int(sample.labels.max()) + 1):
        truth = sample.labels == true_label
        ious = [_iou(labels == label, truth) for label in found]
        matched.append(max(ious))
        spans.append(int((labels == found[int(np.argmax(ious))]).any(axis=(1, 2)).sum()))
    assert np.mean(matched) > 0.45, matched  # 0.66 with mask generation when written
    assert np.median(spans) > 3, spans  # each nucleus is one object across its slices, not one per slice


def test_a_box_prompt_model_propagates_by_box_by_default_others_as_micro_sam():
    from napari_sam_peft.core.sam.registry import NAMED_ARCHITECTURES as ARCHITECTURES
    from napari_sam_peft.core.volume.propagation import default_settings

    assert default_settings(ARCHITECTURES["lite_medsam"]).projection == "box"  # trained for boxes alone
    for name in ("vit_b", "vit_t", "demo"):
        assert default_settings(ARCHITECTURES[name]) == PropagationSettings()  # annotator_3d's defaults
    assert default_settings(None) == PropagationSettings()


@pytest.mark.slow  # LiteMedSAM's real weights
def test_litemedsam_carries_a_nucleus_through_z_by_its_box_not_by_a_single_point():
    from segment_anything import SamPredictor

    from napari_sam_peft.core.evaluation.volume import embed_slices, middle_slice_box
    from napari_sam_peft.core.sam.loading import load_model
    from napari_sam_peft.core.volume.propagation import default_settings

    model = load_model("lite_medsam", device="cpu")
    predictor = SamPredictor(model.sam)
    volume = make_volume(1, (16, 128, 128))
    features = embed_slices(predictor, volume.image)
    label = int(np.unique(volume.labels)[1])
    z, prompts = middle_slice_box(volume.labels, label)
    seed = {z: segment_object(predictor, features.slice_embeddings(z), prompts)}
    spans = np.flatnonzero((volume.labels == label).any(axis=(1, 2)))
    by_point = propagate(predictor, features, seed, PropagationSettings())
    by_default = propagate(predictor, features, seed, default_settings(model.architecture))
    assert by_point.n_slices < by_default.n_slices  # a single point leaves LiteMedSAM's mask on fewer slices
    assert by_default.n_slices >= len(spans) - 2


def test_only_a_first_or_last_stop_slice_ends_propagation_on_both_paths():
    mask = np.ones((4, 4), dtype=bool)
    assert stop_slices({3: None, 5: mask, 7: None, 9: mask, 11: None}) == {3, 11}  # 7 is segmented
    assert stop_slices({5: mask, 6: None}) == {6}
    assert stop_slices({5: None}) == set()  # the only seed: no mask to propagate, said by NoSeedSliceError
