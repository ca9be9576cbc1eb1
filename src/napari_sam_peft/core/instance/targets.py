"""What the instance decoder learns: micro_sam's per-object distance targets, in the decoder's frame.

The decoder turns an ``e x e`` embedding grid into ``16e x 16e`` maps covering SAM's padded input
frame (the image scaled so its longest side fills the input, padded at the bottom and right).
Targets are computed once per image in that frame with torch_em's ``PerObjectDistanceTransform``
(as micro_sam's ``train_instance_segmentation`` does): foreground, normalised distance to each
object's centre, and to its boundary. Training reads random crops of embeddings and targets, so a
step costs a fraction of a whole-image decoder pass.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: the decoder's output pixels per embedding cell (four 2x upsamplings)
DECODER_STRIDE = 16


def distance_targets(labels: np.ndarray, input_size: int, embedding_side: int) -> torch.Tensor:
    """(3, 16e, 16e) float32 targets for ``labels`` (H, W): foreground, centre and boundary distances."""
    from torch_em.transform.label import PerObjectDistanceTransform

    side = DECODER_STRIDE * embedding_side
    scale = input_size / max(labels.shape) * side / input_size
    size = (max(1, round(labels.shape[0] * scale)), max(1, round(labels.shape[1] * scale)))
    resized = F.interpolate(
        torch.from_numpy(labels.astype(np.int64))[None, None].float(), size=size, mode="nearest"
    )
    resized_labels = resized[0, 0].numpy().astype(np.int64)
    transform = PerObjectDistanceTransform(
        distances=True, boundary_distances=True, directed_distances=False, foreground=True, min_size=0
    )
    maps = np.asarray(transform(resized_labels), dtype=np.float32)
    target = torch.zeros((3, side, side), dtype=torch.float32)
    target[:, : size[0], : size[1]] = torch.from_numpy(maps)
    return target


def crop_cells(target: torch.Tensor, cells: int, embedding_side: int, rng: np.random.Generator) -> tuple[int, int]:
    """The top-left embedding cell of a ``cells x cells`` crop, centred on a random foreground pixel
    when there is one (so a crop rarely shows only background)."""
    if cells >= embedding_side:
        return 0, 0
    rows, cols = np.nonzero(target[0].numpy() > 0.5)
    if len(rows):
        pick = rng.integers(len(rows))
        centre = (rows[pick] // DECODER_STRIDE, cols[pick] // DECODER_STRIDE)
    else:
        centre = tuple(rng.integers(embedding_side, size=2))
    top = int(np.clip(centre[0] - cells // 2, 0, embedding_side - cells))
    left = int(np.clip(centre[1] - cells // 2, 0, embedding_side - cells))
    return top, left
