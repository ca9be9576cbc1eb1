import numpy as np
import pytest

from napari_sam_peft.core.data.sample_data import DOMAINS, make_sample, make_series


@pytest.mark.parametrize("domain", DOMAINS)
def test_same_seed_gives_the_same_image_and_labels(domain):
    a, b = make_sample(domain, seed=3), make_sample(domain, seed=3)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = make_sample(domain, seed=4)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize("domain", DOMAINS)
def test_labels_are_sequential_instances_that_match_the_image(domain):
    sample = make_sample(domain, seed=0, shape=(192, 160))
    assert sample.image.shape == sample.labels.shape == (192, 160)
    ids = np.unique(sample.labels)
    assert ids[0] == 0
    np.testing.assert_array_equal(ids[1:], np.arange(1, ids.size))
    assert 8 <= ids.size - 1 <= 40
    sizes = np.bincount(sample.labels.ravel())[1:]
    assert sizes.min() >= 20


def test_the_two_domains_look_different():
    nuclei = make_sample("nuclei", seed=0)
    cells = make_sample("cells", seed=0)
    # Nuclei: bright objects on a dark background, high contrast.
    n_img = nuclei.image.astype(float)
    n_contrast = n_img[nuclei.labels > 0].mean() / n_img[nuclei.labels == 0].mean()
    # Cells: dim objects on a grey background, low contrast, elongated.
    c_img = cells.image.astype(float)
    c_contrast = c_img[cells.labels > 0].mean() / c_img[cells.labels == 0].mean()
    assert n_contrast > 4
    assert 1.0 < c_contrast < 1.6
    assert nuclei.image.dtype == np.uint16 and cells.image.dtype == np.uint8


def test_objects_in_the_cells_domain_are_elongated():
    labels = make_sample("cells", seed=1).labels
    ratios = []
    for obj in range(1, labels.max() + 1):
        rr, cc = np.nonzero(labels == obj)
        if rr.size < 60:
            continue
        eig = np.linalg.eigvalsh(np.cov(np.stack([rr, cc])))
        ratios.append(np.sqrt(eig[1] / max(eig[0], 1e-6)))
    assert np.median(ratios) > 1.8


def test_series_has_distinct_images():
    series = make_series("nuclei", 3, seed=10)
    assert [s.seed for s in series] == [10, 11, 12]
    assert not np.array_equal(series[0].image, series[1].image)


@pytest.mark.parametrize(("domain", "shape"), [("mitochondria", (64, 64)), ("nuclei", (8, 8))])
def test_bad_requests_say_what_is_allowed(domain, shape):
    with pytest.raises(ValueError, match="choose one of|at least 32"):
        make_sample(domain, shape=shape)
