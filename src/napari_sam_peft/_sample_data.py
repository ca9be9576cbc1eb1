"""napari File > Open Sample contributions: the two synthetic domains and a volume, with ground truth."""

from __future__ import annotations

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.sample_volume import make_volume

DESCRIPTIONS = {
    "nuclei": "nuclei (domain A)",
    "cells": "cells (domain B)",
}


def _layers(domain: str, seed: int = 0) -> list[tuple]:
    sample = make_sample(domain, seed=seed)
    name = DESCRIPTIONS[domain]
    return [
        (sample.image, {"name": name, "metadata": {"sample_domain": domain, "seed": seed}}, "image"),
        (
            sample.labels,
            {"name": f"{name} ground truth", "visible": False, "opacity": 0.5},
            "labels",
        ),
    ]


def nuclei_sample() -> list[tuple]:
    """Bright round nuclei on a dark background (domain A), with instance labels."""
    return _layers("nuclei")


def cells_sample() -> list[tuple]:
    """Dim elongated textured cells (domain B), with instance labels."""
    return _layers("cells")


def volume_sample() -> list[tuple]:
    """A (Z, Y, X) volume of nuclei, each spanning a few slices, with 3D instance labels."""
    sample = make_volume(seed=0)
    name = "nuclei volume (3D)"
    return [
        (sample.image, {"name": name, "metadata": {"sample_domain": "nuclei_3d", "seed": 0}}, "image"),
        (sample.labels, {"name": f"{name} ground truth", "visible": False, "opacity": 0.5}, "labels"),
    ]
