"""napari File > Open Sample contributions: the two synthetic domains with ground truth."""

from __future__ import annotations

from napari_sam_peft.core.data.sample_data import make_sample

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
