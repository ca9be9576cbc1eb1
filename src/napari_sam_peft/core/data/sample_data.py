"""Synthetic microscopy images with instance labels, generated offline from a seed.

Two visibly different domains, so that a model trained on one is measurably weaker on
the other (the situation finetuning is for):

- ``nuclei`` (domain A): bright, round, well-separated nuclei on a dark background,
  fluorescence-like, 16-bit.
- ``cells`` (domain B): dim, elongated, textured cells with a dark rim on a mid-grey,
  uneven background, touching each other, phase-contrast-like, 8-bit.

Both have Gaussian blur, uneven illumination and shot plus read noise. The same seed
always gives the same arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DOMAINS = ("nuclei", "cells")


@dataclass(frozen=True)
class SampleImage:
    """One generated image, its instance labels (0 = background) and where it came from."""

    image: np.ndarray
    labels: np.ndarray
    domain: str
    seed: int


def make_sample(domain: str, seed: int = 0, shape: tuple[int, int] = (256, 256)) -> SampleImage:
    """Generate one image of ``domain`` ("nuclei" or "cells").

    Raises
    ------
    ValueError
        For an unknown domain or an image smaller than 32 x 32 pixels.
    """
    if domain not in DOMAINS:
        raise ValueError(f"Unknown sample domain {domain!r}: choose one of {', '.join(DOMAINS)}.")
    if len(shape) != 2 or min(shape) < 32:
        raise ValueError(f"Sample images must be 2D and at least 32 x 32 pixels, not {tuple(shape)}.")
    rng = np.random.default_rng([seed, DOMAINS.index(domain)])
    maker = _make_nuclei if domain == "nuclei" else _make_cells
    image, labels = maker(rng, tuple(int(s) for s in shape))
    return SampleImage(image=image, labels=labels, domain=domain, seed=seed)


def make_series(
    domain: str, n_images: int, seed: int = 0, shape: tuple[int, int] = (256, 256)
) -> list[SampleImage]:
    """``n_images`` images of one domain with consecutive seeds starting at ``seed``."""
    return [make_sample(domain, seed + i, shape) for i in range(n_images)]


def _ellipse_mask(
    shape: tuple[int, ...], center: tuple[float, float], axes: tuple[float, float], angle: float
) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Boolean mask of a filled ellipse, and the slice of ``shape`` it lives in."""
    extent = int(np.ceil(max(axes))) + 2
    r0, c0 = int(center[0]), int(center[1])
    rows = slice(max(r0 - extent, 0), min(r0 + extent + 1, shape[0]))
    cols = slice(max(c0 - extent, 0), min(c0 + extent + 1, shape[1]))
    rr, cc = np.mgrid[rows, cols]
    dr, dc = rr - center[0], cc - center[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (dr * cos + dc * sin) / axes[0]
    v = (-dr * sin + dc * cos) / axes[1]
    return (u * u + v * v) <= 1.0, (rows, cols)


def _place_objects(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    n_target: int,
    axes_sampler: Callable[[], tuple[float, float]],
    max_overlap: float,
) -> np.ndarray:
    """Place ellipses by rejection sampling; later objects only take free pixels."""
    labels = np.zeros(shape, dtype=np.uint16)
    next_id = 1
    for _ in range(n_target * 30):
        if next_id > n_target:
            break
        axes = axes_sampler()
        margin = 2
        center = (rng.uniform(margin, shape[0] - margin), rng.uniform(margin, shape[1] - margin))
        mask, window = _ellipse_mask(shape, center, axes, rng.uniform(0, np.pi))
        region = labels[window]
        taken = np.count_nonzero(region[mask])
        area = np.count_nonzero(mask)
        if area < 20 or taken > max_overlap * area:
            continue
        region[mask & (region == 0)] = next_id
        next_id += 1
    return _relabel_sequential(labels)


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Drop objects that ended up tiny after occlusion and number the rest 1..n."""
    sizes = np.bincount(labels.ravel())
    keep = np.flatnonzero(sizes >= 20)
    keep = keep[keep != 0]
    lookup = np.zeros(sizes.size, dtype=labels.dtype)
    lookup[keep] = np.arange(1, keep.size + 1, dtype=labels.dtype)
    return lookup[labels]


def _illumination(rng: np.random.Generator, shape: tuple[int, ...], strength: float) -> np.ndarray:
    """A smooth multiplicative field around 1, like vignetting or an uneven lamp."""
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    rr /= shape[0]
    cc /= shape[1]
    gr, gc = rng.uniform(-1, 1, size=2)
    field = 1 + strength * (gr * (rr - 0.5) + gc * (cc - 0.5))
    field -= strength * 0.8 * ((rr - rng.uniform(0.3, 0.7)) ** 2 + (cc - rng.uniform(0.3, 0.7)) ** 2)
    return field.astype(np.float32)


def _make_nuclei(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    scale = min(shape) / 256
    n_target = int(rng.integers(14, 22) * (shape[0] * shape[1]) / 256**2)

    def axes() -> tuple[float, float]:
        r = rng.uniform(7, 13) * scale
        return (r * rng.uniform(0.85, 1.15), r * rng.uniform(0.85, 1.15))

    labels = _place_objects(rng, shape, max(n_target, 1), axes, max_overlap=0.0)
    image = np.full(shape, 0.06, dtype=np.float32)
    brightness = rng.uniform(0.55, 1.0, size=labels.max() + 1).astype(np.float32)
    brightness[0] = 0
    inside = labels > 0
    # Chromatin: a little fine texture inside each nucleus.
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 1.5)
    image[inside] = brightness[labels[inside]] * (1 + 0.12 * texture[inside])
    image = ndimage.gaussian_filter(image, 1.2 * scale)
    image *= _illumination(rng, shape, 0.5)
    photons = rng.poisson(np.clip(image, 0, None) * 400).astype(np.float32) / 400
    image = photons + rng.normal(0, 0.01, shape).astype(np.float32)
    return np.clip(image * 40000 + 300, 0, 65535).astype(np.uint16), labels


def _make_cells(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    scale = min(shape) / 256
    n_target = int(rng.integers(16, 24) * (shape[0] * shape[1]) / 256**2)

    def axes() -> tuple[float, float]:
        long = rng.uniform(14, 24) * scale
        return (long, long * rng.uniform(0.3, 0.5))

    labels = _place_objects(rng, shape, max(n_target, 1), axes, max_overlap=0.15)
    inside = labels > 0
    background = 0.45 + 0.03 * ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 8)
    image = background.astype(np.float32)
    # Dim, grainy cytoplasm: only slightly brighter than the background.
    grain = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 1.0)
    contrast = rng.uniform(0.06, 0.14, size=labels.max() + 1).astype(np.float32)
    image[inside] += contrast[labels[inside]] + 0.05 * grain[inside]
    # A dark rim where a cell meets the background or another cell.
    edges = ndimage.morphological_gradient(labels.astype(np.int32), size=3) > 0
    image[edges] -= 0.08
    image = ndimage.gaussian_filter(image, 1.0 * scale)
    image *= _illumination(rng, shape, 0.6)
    image += rng.normal(0, 0.025, shape).astype(np.float32)
    return np.clip(image * 255, 0, 255).astype(np.uint8), labels
