"""A writer process for the kill test: commits objects forever, acknowledging each on a pipe."""

from __future__ import annotations

import numpy as np

from napari_sam_peft.core.data.store import AnnotationStore


def write_forever(path: str, connection, seed: int) -> None:
    store = AnnotationStore(path)
    rng = np.random.default_rng(seed)
    image_id = store.snapshot().images[0].image_id
    while True:
        mask = np.zeros((64, 64), dtype=bool)
        r, c = rng.integers(0, 48, size=2)
        mask[r : r + rng.integers(4, 16), c : c + rng.integers(4, 16)] = True
        object_id = store.add_object(image_id, mask, prompts={"points": [[int(r), int(c)]], "labels": [1]})
        connection.send((object_id, int(r), int(c), mask.sum()))
