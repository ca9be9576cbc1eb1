"""Volumes are checked on their shape, read one slice at a time, and embedded slice on screen first."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.data.sample_volume import make_volume
from napari_sam_peft.core.volume.embed import embed_volume, next_slice
from napari_sam_peft.core.volume.propagation import StoppedError
from napari_sam_peft.core.volume.slice_features import SliceNotReadyError, VolumeFeatures
from napari_sam_peft.core.volume.volumes import (
    InvalidVolumeError,
    check_volume,
    is_volume,
    slices_outward,
    volume_slice,
)
from napari_sam_peft.session import AnnotatorSession


class CountingReads:
    """An array that records which slices were read (a stand-in for a huge zarr or memory map)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, []

    def __getitem__(self, index):
        self.reads.append(index)
        return self.data[index]

    def __array__(self, *args, **kwargs):  # loading it whole is what must never happen
        raise AssertionError("the whole volume was loaded")


def test_a_grey_stack_and_a_colour_stack_are_volumes_and_an_rgb_image_is_not():
    assert is_volume(np.zeros((5, 32, 32)))
    assert is_volume(np.zeros((5, 32, 32, 3)))
    assert not is_volume(np.zeros((32, 32, 3)))
    assert is_volume(np.zeros((32, 32, 3)), rgb=False)  # three slices, as napari's layer.rgb says
    assert check_volume(np.zeros((5, 40, 32, 3), np.uint8)) == check_volume(np.zeros((5, 40, 32, 3)))
    shape = check_volume(np.zeros((5, 40, 32)))
    assert (shape.n_slices, shape.slice_shape, shape.rgb, shape.labels_shape) == (5, (40, 32), False, (5, 40, 32))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((3, 5, 32, 32), "4 dimensions"),
        ((5, 32, 32, 4), "RGBA"),
        ((1, 32, 32), "open it as a 2D image"),
        ((5, 4, 32), "at least 8 x 8"),
    ],
)
def test_what_cannot_be_a_volume_is_one_line_that_says_what_to_do(shape, message):
    with pytest.raises(InvalidVolumeError, match=message) as error:
        check_volume(np.zeros(shape))
    assert "\n" not in str(error.value)


def test_checking_and_reading_a_slice_never_load_the_volume_whole():
    volume = CountingReads(np.arange(4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16))
    assert check_volume(volume).n_slices == 4
    assert volume_slice(volume, 2).shape == (16, 16)
    assert volume.reads == [2]
    lazy = zarr.create_array(store={}, shape=(6, 16, 16), dtype="u2", chunks=(1, 16, 16))
    lazy[3] = 7
    assert volume_slice(lazy, 3).max() == 7


def test_a_slice_with_nan_or_outside_the_volume_is_refused_and_a_blank_one_is_not():
    volume = np.zeros((3, 16, 16), dtype=np.float32)
    assert volume_slice(volume, 0).max() == 0  # blank: micro_sam normalises each slice on its own
    volume[1, 2, 2] = np.nan
    with pytest.raises(InvalidVolumeError, match="Slice 1 has 1 NaN"):
        volume_slice(volume, 1)
    with pytest.raises(InvalidVolumeError, match="slices 0 to 2"):
        volume_slice(volume, 3)


def test_slices_are_embedded_from_the_shown_one_outwards_and_follow_the_user():
    assert slices_outward(2, 5) == [2, 3, 1, 4, 0]
    assert slices_outward(0, 3) == [0, 1, 2]
    features = VolumeFeatures(6)
    focus = [3]
    order = []

    def embed(z):
        order.append(z)
        if len(order) == 2:
            focus[0] = 0  # the user scrolls to the bottom slice while the volume embeds
        return {"features": np.full((1, 4, 2, 2), z, np.float32), "input_size": (8, 8), "original_size": (8, 8)}

    embed_volume(features, embed, lambda: focus[0])
    assert order == [3, 4, 0, 1, 2, 5]
    assert features.complete and next_slice(features, 2) is None
    assert features[4].max() == 4 and features.slice_embeddings(5)["original_size"] == (8, 8)


def test_a_slice_not_embedded_yet_says_so_and_stopping_keeps_what_was_embedded():
    features = VolumeFeatures(4)
    with pytest.raises(SliceNotReadyError, match="Slice 0 is not embedded yet"):
        features.as_micro_sam()
    done = []

    def embed(z):
        done.append(z)
        return {"features": np.zeros((1, 4, 2, 2), np.float32), "input_size": (8, 8), "original_size": (8, 8)}

    with pytest.raises(StoppedError, match="kept"):
        embed_volume(features, embed, lambda: 1, should_stop=lambda: len(done) == 2)
    assert features.count == 2 and features.ready(1) and features.ready(2)
    with pytest.raises(SliceNotReadyError, match="Slice 3"):
        features[3]


def test_each_slice_is_a_cache_entry_of_its_own_so_reopening_a_volume_embeds_nothing(tiny_model, tmp_path):
    volume = make_volume(seed=0, shape=(8, 64, 64)).image
    volume[0] = 0  # a blank slice, as a padded stack has
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(tiny_model)
    features = embed_volume(VolumeFeatures(8), lambda z: session.embeddings.compute_slice(volume, z)[1], lambda: 4)
    assert session.embeddings.cache.computed == 8
    again = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    again.model.set_base(tiny_model)
    key, embeddings = again.embeddings.compute_slice(volume, 5)
    assert again.embeddings.cache.computed == 0 and key.tile_shape is None
    np.testing.assert_array_equal(np.asarray(embeddings["features"]), features[5])
