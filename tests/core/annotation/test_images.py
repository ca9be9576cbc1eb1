import numpy as np
import pytest

from napari_sam_peft.core.annotation.images import (
    InvalidImageError,
    UnsupportedDimensionsError,
    check_image,
    image_content_hash,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "image",
    [
        RNG.integers(0, 255, (32, 40), dtype=np.uint8),
        RNG.integers(0, 65535, (32, 40), dtype=np.uint16),
        RNG.random((32, 40)).astype(np.float32),
        RNG.random((32, 40)) * 1e6 - 5e5,
        RNG.integers(-5, 5, (32, 40), dtype=np.int8),
        RNG.random((32, 40)) > 0.5,
        RNG.integers(0, 255, (32, 40, 3), dtype=np.uint8),
    ],
    ids=["uint8", "uint16", "float32", "float64-signed", "int8", "bool", "rgb"],
)
def test_greyscale_and_rgb_of_any_dtype_are_accepted(image):
    checked = check_image(image)
    assert checked.shape[:2] == (32, 40)


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (np.zeros((0, 0)), InvalidImageError, "empty"),
        (np.zeros((0, 64)), InvalidImageError, "empty"),
        (np.ones((1, 1)), InvalidImageError, "at least 8 x 8"),
        (np.full((16, 16), np.nan), InvalidImageError, "NaN"),
        (np.where(RNG.random((16, 16)) > 0.5, np.inf, 1.0), InvalidImageError, "infinite"),
        (np.zeros((16, 16, 4), np.uint8) + np.arange(4, dtype=np.uint8), InvalidImageError, "4 channels"),
        (RNG.random((5, 16, 16)), UnsupportedDimensionsError, "stack of planes"),
        (RNG.random((2, 5, 16, 16)), UnsupportedDimensionsError, "stack of planes"),
        (np.full((16, 16), 7), InvalidImageError, "blank"),
        (np.array(["a"] * 100).reshape(10, 10), InvalidImageError, "convert"),
    ],
)
def test_unusable_images_are_refused_with_what_to_do(image, error, message):
    with pytest.raises(error, match=message):
        check_image(image)


def test_rgb_flag_false_makes_a_trailing_3_a_volume():
    with pytest.raises(UnsupportedDimensionsError):
        check_image(RNG.random((16, 16, 3)), rgb=False)


def test_content_hash_sees_values_shape_and_dtype():
    a = RNG.integers(0, 9, (16, 16), dtype=np.uint8)
    assert image_content_hash(a) == image_content_hash(a.copy())
    b = a.copy()
    b[0, 0] += 1
    assert image_content_hash(a) != image_content_hash(b)
    assert image_content_hash(a) != image_content_hash(a.astype(np.uint16))
    assert image_content_hash(a) != image_content_hash(a.reshape(8, 32))
