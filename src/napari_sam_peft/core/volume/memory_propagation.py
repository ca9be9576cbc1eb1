"""Propagating one object through z with SAM 2's memory: Meta's video predictor on the stored embeddings.

For a SAM 2.1 model, ``Shift+S`` runs ``sam2``'s ``SAM2VideoPredictor`` over the volume's slices as
frames, as micro_sam's dev branch does (``micro_sam.v2``): every prompted slice's mask conditions the
memory, propagation runs forward from the first prompted slice, then backward when the forward pass
did not reach the volume's end, and each direction stops after :data:`EMPTY_SLICES_TO_STOP`
consecutive slices where the object is empty (micro_sam dev's ``early_stop_patience``, 2 in its
annotator). A stop slice (one with negative points only) as the first or last seed ends the propagation
there; one between prompted slices is segmented, as on the SAM 1 path (``propagation.stop_slices``).

The frames are never read: the predictor's image features come from the volume's stored embeddings
(the packed SAM 2.1 embedding, see ``core.sam.sam2_as_sam``), so the slices the annotator embedded are
not embedded again. The predictor shares the live model's modules, adapter included.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from sam2.sam2_video_predictor import SAM2VideoPredictor

from ..sam.internals import sam2_frame_features
from ..sam.sam2_as_sam import unpack_features
from .slice_features import VolumeFeatures

#: consecutive empty slices that end a direction (micro_sam dev's annotator default ``early_stop_patience``)
EMPTY_SLICES_TO_STOP = 2


class StoredFeatureVideoPredictor(SAM2VideoPredictor):
    """Meta's video predictor whose frames' features are the volume's stored embeddings."""

    def _get_image_feature(self, inference_state: dict, frame_idx: int, batch_size: int) -> tuple:
        cache = inference_state["cached_features"]
        backbone_out = cache.get(frame_idx)
        if backbone_out is None:
            backbone_out = _backbone_out(self, inference_state["volume_features"][frame_idx])
            cache[frame_idx] = backbone_out
            while len(cache) > 4:
                cache.popitem(last=False)
        expanded = {
            "backbone_fpn": [f.expand(batch_size, -1, -1, -1) for f in backbone_out["backbone_fpn"]],
            "vision_pos_enc": [p.expand(batch_size, -1, -1, -1) for p in backbone_out["vision_pos_enc"]],
        }
        return (None, *sam2_frame_features(self, expanded))


def _backbone_out(model: Any, packed: np.ndarray) -> dict[str, list[torch.Tensor]]:
    """The dict ``forward_image`` gives, from a slice's packed embedding (``no_mem_embed`` taken back out:
    the video predictor adds it itself on prompted slices)."""
    device = model.no_mem_embed.device
    width = model.sam_mask_decoder.transformer_dim
    embedding, (s0, s1) = unpack_features(torch.as_tensor(packed, device=device), width)
    top = embedding - model.no_mem_embed.reshape(1, -1, 1, 1)
    fpn = [s0, s1, top]
    position = model.image_encoder.neck.position_encoding
    return {"backbone_fpn": fpn, "vision_pos_enc": [position(f).to(f.dtype) for f in fpn]}


def video_predictor_for(model: Any) -> StoredFeatureVideoPredictor:
    """A video predictor sharing ``model``'s modules and settings (no copy of the weights), with the
    video settings ``sam2.build_sam.build_sam2_video_predictor`` applies."""
    predictor = StoredFeatureVideoPredictor.__new__(StoredFeatureVideoPredictor)
    predictor.__dict__.update(model.__dict__)  # the same parameter and module dicts: one model
    predictor.fill_hole_area = 0  # needs sam2's CUDA extension, which is not built
    predictor.non_overlap_masks = False
    predictor.clear_non_cond_mem_around_input = False
    predictor.add_all_frames_to_correct_as_cond = False
    predictor.binarize_mask_from_pts_for_mem_enc = True
    return predictor


def _inference_state(features: VolumeFeatures, side: int, device: torch.device) -> dict:
    """What ``SAM2VideoPredictor.init_state`` builds, without frames (micro_sam dev's ``init_state`` too)."""
    return {
        "num_frames": features.n_slices,
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": side,
        "video_width": side,
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
        "cached_features": OrderedDict(),
        "volume_features": features,
    }


def _direction(
    frames: Iterator[tuple[int, list[int], torch.Tensor]],
    shape: tuple[int, int],
    stops: set[int],
    step: Callable[[int], None],
) -> dict[int, np.ndarray]:
    """The masks of one direction of ``propagate_in_video``, up to a stop slice or two empty slices."""
    masks: dict[int, np.ndarray] = {}
    empty = 0
    for z, _ids, logits in frames:
        if z in stops:
            break
        mask = (logits[0, 0] > 0).cpu().numpy()[: shape[0], : shape[1]]
        masks[z] = mask
        step(z)
        empty = empty + 1 if not mask.any() else 0
        if empty >= EMPTY_SLICES_TO_STOP:
            break
    return masks


def propagate_with_memory(
    model: Any,
    features: VolumeFeatures,
    masks: Mapping[int, np.ndarray],
    stops: set[int],
    *,
    on_slice: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The object of ``masks`` (prompted slice -> its 2D mask, at least one) through the volume, up to any
    slice of ``stops``: (Z, Y, X) bool.

    ``model`` is the live SAM 2.1 model; the slices propagation reaches must be embedded.
    ``on_slice(n)`` is called with the number of slices done after each one (it may raise to stop).
    """
    shape = next(iter(masks.values())).shape
    side = max(shape)
    predictor = video_predictor_for(model)
    device = model.no_mem_embed.device
    state = _inference_state(features, side, device)
    done: set[int] = set()

    def step(z: int) -> None:
        done.add(z)
        if on_slice is not None:
            on_slice(len(done))

    result = np.zeros((features.n_slices, *shape), dtype=bool)
    with torch.inference_mode():
        for z, mask in masks.items():
            padded = np.zeros((side, side), dtype=bool)
            padded[: shape[0], : shape[1]] = mask
            predictor.add_new_mask(state, frame_idx=z, obj_id=1, mask=torch.from_numpy(padded))
        found = _direction(predictor.propagate_in_video(state), shape, stops, step)
        if min(masks) > 0 and len(found) < features.n_slices:
            backward = predictor.propagate_in_video(state, start_frame_idx=min(masks), reverse=True)
            found = {**_direction(backward, shape, stops, step), **found}
    for z, mask in found.items():
        result[z] = mask
    for z, mask in masks.items():
        result[z] = mask  # a prompted slice keeps the user's mask
    return result
