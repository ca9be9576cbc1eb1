"""The test tensors of a bioimage.io package: an annotated image, prompts for some of its objects, and what
the packaged model answers, as micro_sam's exporter makes them (its input and output names and axes).

The prompts come from the ground truth: each object's box (x0, y0, x1, y1), one positive point inside it
(the farthest from its border, as the evaluation's first click) and its mask as SAM's low-resolution
mask-prompt logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SamPeftError
from ..evaluation.interactive import farthest_interior_point

#: how many objects of the test image get prompts
PROMPTED_OBJECTS = 2
#: the mask prompt's logits inside (+) and outside (-) the object
MASK_LOGIT = 8.0


@dataclass
class TestTensors:
    """Arrays saved as ``.npy`` test tensors: ``inputs`` by input id, ``outputs`` by output id."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    def save(self, folder: Path) -> tuple[dict[str, Path], dict[str, Path]]:
        """Write each tensor to ``folder/<id>.npy``; returns the paths of inputs and outputs."""
        paths = []
        for tensors, kind in ((self.inputs, "input"), (self.outputs, "output")):
            written = {}
            for name, array in tensors.items():
                written[name] = folder / f"test_{kind}_{name}.npy"
                np.save(written[name], array)
            paths.append(written)
        return paths[0], paths[1]


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """An image as the package's input takes it: (Y, X, 3) uint8, grey repeated, other types rescaled.

    Raises
    ------
    SamPeftError
        For anything but a 2D grey or RGB image.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise SamPeftError(f"The test image must be 2D grey or RGB, not of shape {image.shape}.")
    if image.dtype != np.uint8:
        low, high = float(image.min()), float(image.max())
        image = ((image - low) / (high - low or 1.0) * 255).round().astype(np.uint8)
    return image


def mask_logits(mask: np.ndarray, img_size: int, mask_size: int) -> np.ndarray:
    """SAM's mask prompt for ``mask``: resized as the image is (longest side to ``img_size``, padded at the
    bottom right), then to ``mask_size`` square, as logits."""
    from segment_anything.utils.transforms import ResizeLongestSide

    binary = torch.from_numpy(mask.astype(np.float32))[None, None]
    resized = ResizeLongestSide(img_size).apply_image_torch(binary)
    padded = torch.nn.functional.pad(resized, (0, img_size - resized.shape[-1], 0, img_size - resized.shape[-2]))
    small = torch.nn.functional.interpolate(padded, size=(mask_size, mask_size), mode="bilinear")
    return np.where(small[0].numpy() > 0.5, MASK_LOGIT, -MASK_LOGIT).astype(np.float32)


def prompted_objects(labels: np.ndarray, count: int = PROMPTED_OBJECTS) -> list[int]:
    """The ``count`` largest objects of ``labels`` (at least one).

    Raises
    ------
    SamPeftError
        For labels without objects.
    """
    ids, sizes = np.unique(labels[labels != 0], return_counts=True)
    if len(ids) == 0:
        raise SamPeftError("The test image has no annotated objects: choose an annotated image for the test data.")
    return [int(i) for i in ids[np.argsort(-sizes, kind="stable")][:count]]


def test_inputs(image: np.ndarray, labels: np.ndarray, img_size: int, mask_size: int) -> dict[str, np.ndarray]:
    """The image (1, 3, Y, X) and prompts for its largest objects, in the package's input layout."""
    rgb = as_rgb_uint8(image)
    boxes, points, masks = [], [], []
    for value in prompted_objects(np.asarray(labels)):
        mask = np.asarray(labels) == value
        rows, cols = np.nonzero(mask)
        boxes.append([cols.min(), rows.min(), cols.max(), rows.max()])
        point = farthest_interior_point(mask)
        assert point is not None  # the object has pixels
        row, col = point
        points.append([[col, row]])
        masks.append(mask_logits(mask, img_size, mask_size))
    return {
        "image": rgb.transpose(2, 0, 1)[None],
        "box_prompts": np.asarray(boxes, dtype=np.int64)[None],
        "point_prompts": np.asarray(points, dtype=np.int64)[None],
        "point_labels": np.ones((1, len(points), 1), dtype=np.int64),
        "mask_prompts": np.stack(masks)[None],
    }


def run_adaptor(adaptor: torch.nn.Module, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What the packaged model answers to every test input: masks, scores and embeddings."""
    with torch.no_grad():
        masks, scores, embeddings = adaptor(**{name: torch.from_numpy(array) for name, array in inputs.items()})
    return {"masks": masks.numpy(), "scores": scores.numpy(), "embeddings": embeddings.numpy()}


def store_test_sample(store_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The image (and instance labels) whose prompts become the test tensors: the store's first annotated
    validation image, else its first training image; of a volume, its slice with the most objects.

    Raises
    ------
    SamPeftError
        For a store without annotated images.
    """
    from ..data.store import AnnotationStore

    store = AnnotationStore(store_path)
    images = [i for i in store.snapshot().images if i.objects]
    images.sort(key=lambda i: i.split != "val")  # the validation split first, in commit order
    if not images:
        raise SamPeftError(f"The store {store_path} has no annotated images to make the package's test data from.")
    first = images[0]
    labels = store.labels(first)
    if not first.volume:
        return store.image(first.image_id), labels
    z = int(np.argmax([len(np.unique(plane)) for plane in labels]))
    return np.asarray(store.lazy_image(first.image_id)[z]), labels[z]
