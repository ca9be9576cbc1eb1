"""The instance decoder's share of a joint training step: micro_sam's distance loss on a crop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..sam.internals import unetr_forward_on_embeddings
from ..sam.preprocessing import embedding_side, input_size
from .targets import DECODER_STRIDE, crop_cells, distance_targets

#: embedding cells per side a training step decodes (16 x 16 of SAM's 64 x 64: 1/16 of the cost)
CROP_CELLS = 16


class InstanceObjective:
    """The decoder and its targets for the training images; :meth:`loss` is one step's decoder loss.

    Targets are computed on first use of each image and kept (one (3, 16e, 16e) tensor per image).
    """

    def __init__(self, sam: nn.Module, decoder: Any, labels: Sequence[np.ndarray]) -> None:
        from torch_em.loss import DiceBasedDistanceLoss

        self.decoder = decoder  # micro_sam's DecoderAdapter
        self.labels = labels
        self.input_size, self.embedding_side = input_size(sam), embedding_side(sam)
        self.targets: dict[int, torch.Tensor] = {}
        self.criterion = DiceBasedDistanceLoss(mask_distances_in_bg=True)

    def target(self, index: int) -> torch.Tensor:
        """Image ``index``'s targets in the decoder's frame (computed once)."""
        if index not in self.targets:
            self.targets[index] = distance_targets(self.labels[index], self.input_size, self.embedding_side)
        return self.targets[index]

    def loss(self, embeddings: torch.Tensor, index: int, rng: np.random.Generator) -> torch.Tensor:
        """Dice-based distance loss of the decoder on a random crop of image ``index``'s embeddings."""
        target = self.target(index)
        cells = min(CROP_CELLS, self.embedding_side)
        top, left = crop_cells(target, cells, self.embedding_side, rng)
        crop = embeddings[:, :, top : top + cells, left : left + cells]
        prediction = unetr_forward_on_embeddings(self.decoder, crop).float()
        window = target[
            :,
            top * DECODER_STRIDE : (top + cells) * DECODER_STRIDE,
            left * DECODER_STRIDE : (left + cells) * DECODER_STRIDE,
        ]
        return self.criterion(prediction, window[None].to(prediction.device))
