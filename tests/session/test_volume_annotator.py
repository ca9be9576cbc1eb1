"""A volume in the session: slice embeddings for one model version, prompts on a slice, 3D commits."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.data.sample_volume import make_volume
from napari_sam_peft.core.volume.propagation import StoppedError
from napari_sam_peft.core.volume.slice_features import SliceNotReadyError
from napari_sam_peft.session import AnnotatorSession
from napari_sam_peft.session.volume_annotator import VolumeAnnotator

SAMPLE = make_volume(seed=0, shape=(8, 64, 64))


@pytest.fixture
def session(tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"), default_store=lambda: None)
    session.model.set_base(tiny_model)
    return session


def _annotator(session):
    return VolumeAnnotator(session.model, session.embeddings, SAMPLE.image)


def test_a_slice_can_be_prompted_once_it_is_embedded_before_the_rest(session):
    annotator = _annotator(session)
    with pytest.raises(SliceNotReadyError, match="Slice 4 is not embedded yet"):
        annotator.segment_slice(4, ObjectPrompts(box=np.array([10, 10, 30, 30])))
    seen = []
    with pytest.raises(StoppedError):  # the user closed the volume after the first slice
        annotator.embed(lambda: 4, on_slice=seen.append, should_stop=lambda: len(seen) == 1)
    assert seen == [4] and annotator.features.count == 1
    mask = annotator.segment_slice(4, ObjectPrompts(box=np.array([10, 10, 30, 30])))
    assert mask.shape == (64, 64) and mask.dtype == bool


def test_a_reload_makes_the_slice_embeddings_stale_and_they_start_again(session, tiny_model):
    annotator = _annotator(session)
    annotator.embed(lambda: 0)
    assert annotator.features.complete
    session.model.set_base(tiny_model)  # any change of model, adapter or precision
    assert annotator.features.count == 0
    annotator.embed(lambda: 0)
    assert annotator.features.complete and session.embeddings.cache.reused >= 8  # the same model: read back


def test_propagation_embeds_what_it_needs_and_returns_a_3d_mask(session):
    annotator = _annotator(session)
    seed = SAMPLE.labels[4] == SAMPLE.labels[4].max()
    result = annotator.propagate({4: seed})
    assert result.mask.shape == SAMPLE.labels.shape and result.mask[4].any()
    assert annotator.features.complete


def test_a_committed_3d_object_is_recorded_with_the_slice_of_its_prompts(session, tmp_path):
    session.annotations.open_store(tmp_path / "v.sampeft.zarr")
    opened = session.annotations.open_image("stack", SAMPLE.image, volume=True)
    assert opened.labels.shape == SAMPLE.labels.shape
    obj = (SAMPLE.labels == 1).astype(np.uint32)
    prompts = ObjectPrompts(box=np.array([1.0, 2, 20, 30]), slice=4)
    (new_id,) = session.annotations.commit("stack", SAMPLE.image, opened.labels, obj, prompts=[prompts])
    (stored,) = session.annotations.store.snapshot().images
    assert stored.volume and stored.labels_shape == SAMPLE.labels.shape
    (recorded,) = stored.objects
    assert recorded.prompts["slice"] == 4 and recorded.prompts["box"] == [1.0, 2.0, 20.0, 30.0]
    np.testing.assert_array_equal(session.annotations.store.labels(stored) == 1, SAMPLE.labels == 1)
    assert session.annotations.undo("stack", SAMPLE.image, opened.labels) is not None
    assert session.annotations.store.snapshot().images[0].objects == []


class SliceOnlyVolume:
    """A volume that can be read a slice at a time and refuses to be read whole (as a volume larger than
    memory must never be): reading it whole raises."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.whole_reads = 0

    def __getitem__(self, index):
        if not isinstance(index, int | np.integer):
            raise AssertionError(f"read more than one slice: {index!r}")
        return self._data[index]

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, *args, **kwargs):
        self.whole_reads += 1
        raise AssertionError("the volume was read whole")


def test_a_lazy_volume_is_embedded_committed_and_undone_without_being_read_whole(session, tmp_path):
    lazy = SliceOnlyVolume(SAMPLE.image)
    session.annotations.open_store(tmp_path / "v.sampeft.zarr")
    annotator = VolumeAnnotator(session.model, session.embeddings, lazy)
    annotator.embed(focus=lambda: 3)
    opened = session.annotations.open_image("lazy", lazy, volume=True)
    obj = (SAMPLE.labels == 1).astype(np.uint32)
    session.annotations.commit(
        "lazy", lazy, opened.labels, obj, prompts=[ObjectPrompts(box=[1, 2, 20, 30], slice=4)]
    )
    (stored,) = session.annotations.store.snapshot().images
    assert stored.volume and len(stored.objects) == 1
    np.testing.assert_array_equal(session.annotations.store.lazy_image(stored.image_id)[4], SAMPLE.image[4])
    assert session.annotations.undo("lazy", lazy, opened.labels) is not None
    assert lazy.whole_reads == 0
