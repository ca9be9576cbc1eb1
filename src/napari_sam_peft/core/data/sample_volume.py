"""A synthetic 3D volume with instance labels, generated offline from a seed.

Nuclei as ellipsoids in a (Z, Y, X) stack, fluorescence-like as :mod:`.sample_data`'s ``nuclei``
(so the demo model can segment its slices), with blur along z and xy, uneven illumination and
shot plus read noise. Each nucleus spans a few slices and ends, so propagation has somewhere to
stop. The same seed always gives the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .sample_data import _illumination

DEFAULT_VOLUME_SHAPE = (24, 256, 256)  # slices the size of the 2D samples, nuclei of their size


@dataclass(frozen=True)
class SampleVolume:
    """One generated volume (Z, Y, X) uint16 and its 3D instance labels (0 = background)."""

    image: np.ndarray
    labels: np.ndarray
    seed: int


def make_volume(seed: int = 0, shape: tuple[int, int, int] = DEFAULT_VOLUME_SHAPE) -> SampleVolume:
    """Generate a volume of nuclei.

    Raises
    ------
    ValueError
        For a shape that is not 3D or smaller than 8 x 32 x 32.
    """
    if len(shape) != 3 or shape[0] < 8 or min(shape[1:]) < 32:
        raise ValueError(f"Sample volumes are (Z, Y, X) with at least 8 x 32 x 32 voxels, not {tuple(shape)}.")
    rng = np.random.default_rng([seed, 3])
    n_slices, height, width = (int(n) for n in shape)
    scale = min(height, width) / 256
    labels = np.zeros(shape, dtype=np.uint16)
    n_target = int(rng.integers(14, 22) * height * width / 256**2)
    zz, rr, cc = np.ogrid[0:n_slices, 0:height, 0:width]
    next_id = 1
    for _ in range(n_target * 40):
        if next_id > n_target:
            break
        radius_xy = rng.uniform(8, 13) * scale
        radius_z = rng.uniform(3.0, 5.5)
        centre = (
            rng.uniform(radius_z * 0.6, n_slices - radius_z * 0.6),
            rng.uniform(radius_xy, height - radius_xy),
            rng.uniform(radius_xy, width - radius_xy),
        )
        axes = (radius_z, radius_xy * rng.uniform(0.85, 1.15), radius_xy * rng.uniform(0.85, 1.15))
        distance = sum(((grid - c) / a) ** 2 for grid, c, a in zip((zz, rr, cc), centre, axes, strict=True))
        inside = distance <= 1.0
        if np.count_nonzero(inside) < 200 or labels[inside].any():
            continue  # too small, or touching another nucleus
        labels[inside] = next_id
        next_id += 1
    image = np.full(shape, 0.06, dtype=np.float32)
    brightness = rng.uniform(0.55, 1.0, size=int(labels.max()) + 1).astype(np.float32)
    brightness[0] = 0
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 1.5)
    nucleus = labels > 0
    image[nucleus] = brightness[labels[nucleus]] * (1 + 0.12 * texture[nucleus])
    image = ndimage.gaussian_filter(image, (0.8, 1.2 * scale, 1.2 * scale))
    image *= _illumination(rng, (height, width), 0.5)[None]
    photons = rng.poisson(np.clip(image, 0, None) * 400).astype(np.float32) / 400
    image = photons + rng.normal(0, 0.01, shape).astype(np.float32)
    return SampleVolume(np.clip(image * 40000 + 300, 0, 65535).astype(np.uint16), labels, seed)
