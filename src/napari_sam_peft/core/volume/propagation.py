"""Propagating one object through z: micro_sam's ``segment_mask_in_volume`` on per-slice embeddings
(for SAM 2.1 models, SAM 2's video predictor with its memory: ``memory_propagation``).

A user segments an object on one or several slices (the *seeds*); propagation projects it slice
by slice away from them (by micro_sam's projection modes) and stops where the IoU between
neighbouring slices drops below the threshold, or at a *stop slice*: a first or last annotated
slice that holds only negative points. Between two seeds the gap is filled from both ends. The
defaults are those of micro_sam's ``annotator_3d``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SamPeftError
from .slice_features import VolumeFeatures

#: micro_sam's projection modes (``micro_sam.multi_dimensional_segmentation.PROJECTION_MODES``)
PROJECTIONS = ("box", "mask", "points", "points_and_mask", "single_point")


class StoppedError(SamPeftError):
    """The user stopped work on a volume (propagation, automatic segmentation, embedding) part way."""

    def __init__(self, what: str = "Propagation stopped; nothing was changed.") -> None:
        super().__init__(what)


class NoSeedSliceError(SamPeftError):
    """Propagation was asked for without a segmented slice to start from."""


@dataclass(frozen=True)
class PropagationSettings:
    """How an object is carried from slice to slice (micro_sam's annotator_3d defaults)."""

    projection: str = "single_point"
    iou_threshold: float = 0.5
    box_extension: float = 0.05

    def __post_init__(self) -> None:
        if self.projection not in PROJECTIONS:
            raise ValueError(f"Unknown projection {self.projection!r}: choose one of {', '.join(PROJECTIONS)}.")
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise ValueError(f"The IoU threshold must be between 0 and 1, not {self.iou_threshold}.")


def default_settings(architecture: Any = None) -> PropagationSettings:
    """micro_sam's annotator_3d defaults for ``architecture``'s model, except that a model trained for box
    prompts alone (LiteMedSAM) carries an object to the next slice by its box: from the single point
    micro_sam projects by default, LiteMedSAM's masks stay on the first slice (3D IoU 0.10-0.18 against
    0.47-0.75 by box on the generated nuclei volume)."""
    from ..sam.tiny_vit_encoder import LITE_MEDSAM

    if getattr(architecture, "variant", None) == LITE_MEDSAM:
        return PropagationSettings(projection="box")
    return PropagationSettings()


#: the projections that prompt with a mask, which micro_sam sizes for a 64 x 64 embedding grid
MASK_PROJECTIONS = ("mask", "points_and_mask")


def projections_for(sam: Any) -> tuple[str, ...]:
    """The projection modes ``sam`` can propagate with: the mask modes need SAM's 256 x 256 mask input
    (models with another embedding grid, such as the demo model, take the others)."""
    if tuple(sam.prompt_encoder.mask_input_size) == (256, 256):
        return PROJECTIONS
    return tuple(p for p in PROJECTIONS if p not in MASK_PROJECTIONS)


#: what the volume panel says for a model that propagates with SAM 2's memory
MEMORY_PROPAGATION = (
    "SAM 2.1 carries the object with its memory (its video predictor), forward and backward from the "
    "prompted slices, and stops after 2 empty slices; projection and IoU stop are SAM 1's."
)


def propagates_with_memory(sam: Any) -> bool:
    """Whether ``sam`` propagates with SAM 2's video predictor (a SAM 2.1 model) rather than micro_sam's
    ``segment_mask_in_volume``."""
    from ..sam.registry import is_sam1_model

    return not is_sam1_model(sam)


@dataclass(frozen=True)
class Propagated:
    """A propagated object: its 3D mask and the slices it spans."""

    mask: np.ndarray  # (Z, Y, X) bool
    z_range: tuple[int, int]  # first and last slice segmented (inclusive)
    seeds: tuple[int, ...]  # the annotated slices it started from (stop slices included)

    @property
    def n_slices(self) -> int:
        """How many slices hold the object."""
        return int(self.mask.any(axis=(1, 2)).sum())


def propagate(
    predictor: Any,
    features: VolumeFeatures,
    seeds: Mapping[int, np.ndarray | None],
    settings: PropagationSettings | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Propagated:
    """Carry an object from its seed slices through the volume.

    Parameters
    ----------
    predictor
        The live model's predictor (micro_sam's ``SamPredictor``).
    features
        The volume's embeddings; propagation reads the slices it reaches (each must be embedded:
        :class:`~.slice_features.SliceNotReadyError` otherwise).
    seeds
        Slice index -> the object's 2D mask there, or None for a stop slice (only negative points).
        A stop slice counts only as the first or last seed, as in micro_sam.
    progress
        Called with (slices done, slices in the volume).
    should_stop
        Polled after each slice; True ends the propagation with :class:`StoppedError`.

    Raises
    ------
    NoSeedSliceError
        When no seed slice holds a mask.
    """
    from micro_sam.multi_dimensional_segmentation import segment_mask_in_volume

    if propagates_with_memory(predictor.model):
        return _propagate_with_memory(predictor.model, features, seeds, progress, should_stop)
    settings = settings or PropagationSettings()
    if settings.projection not in projections_for(predictor.model):
        raise ValueError(
            f"This model cannot propagate with the {settings.projection!r} projection (its mask prompts are not "
            f"micro_sam's size): choose one of {', '.join(projections_for(predictor.model))}."
        )
    order = sorted(int(z) for z in seeds)
    masks = seed_masks(seeds)
    stops = stop_slices(seeds)
    stop_lower, stop_upper = order[0] in stops, order[-1] in stops
    slices = np.array([z for z in order if z in masks or z in stops])
    shape = (features.n_slices, *np.asarray(next(iter(masks.values()))).shape)
    segmentation = np.zeros(shape, dtype=np.uint32)
    for z, mask in masks.items():
        segmentation[z] = np.asarray(mask, dtype=bool)
    done = [len(slices)]

    def update(increment: int = 1) -> None:
        done[0] += int(increment)
        if progress is not None:
            progress(min(done[0], features.n_slices), features.n_slices)
        if should_stop is not None and should_stop():
            raise StoppedError()

    segmentation, (z_min, z_max) = segment_mask_in_volume(
        segmentation,
        predictor,
        features.as_micro_sam(),
        slices,
        stop_lower,
        stop_upper,
        iou_threshold=settings.iou_threshold,
        projection=settings.projection,
        update_progress=update,
        box_extension=settings.box_extension,
    )
    if progress is not None:
        progress(features.n_slices, features.n_slices)
    return Propagated(mask=segmentation > 0, z_range=(int(z_min), int(z_max)), seeds=tuple(order))


def seed_masks(seeds: Mapping[int, np.ndarray | None]) -> dict[int, np.ndarray]:
    """The seed slices that hold a mask, in slice order, as boolean masks.

    Raises
    ------
    NoSeedSliceError
        When no seed slice holds a mask.
    """
    masks = {
        int(z): np.asarray(seeds[z], dtype=bool)
        for z in sorted(seeds)
        if seeds[z] is not None and np.asarray(seeds[z]).any()
    }
    if not masks:
        raise NoSeedSliceError("Segment the object on at least one slice (S) before propagating it (Shift+S).")
    return masks


def stop_slices(seeds: Mapping[int, np.ndarray | None]) -> set[int]:
    """The slices where propagation ends: the first or the last seed slice when it is a stop slice (only
    negative points) and not the only seed. A stop slice in the middle is ignored and segmented by the
    propagation, as micro_sam does."""
    order = sorted(int(z) for z in seeds)
    if len(order) < 2:
        return set()
    return {z for z in (order[0], order[-1]) if seeds[z] is None}


def _propagate_with_memory(
    model: Any,
    features: VolumeFeatures,
    seeds: Mapping[int, np.ndarray | None],
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> Propagated:
    from .memory_propagation import propagate_with_memory

    masks = seed_masks(seeds)
    stops = stop_slices(seeds)

    def on_slice(done: int) -> None:
        if progress is not None:
            progress(done, features.n_slices)
        if should_stop is not None and should_stop():
            raise StoppedError()

    mask = propagate_with_memory(model, features, masks, stops, on_slice=on_slice)
    if progress is not None:
        progress(features.n_slices, features.n_slices)
    filled = np.flatnonzero(mask.any(axis=(1, 2)))
    z_range = (int(filled[0]), int(filled[-1])) if len(filled) else (0, 0)
    return Propagated(mask=mask, z_range=z_range, seeds=tuple(sorted(int(z) for z in seeds)))
