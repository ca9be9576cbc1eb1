"""Each image's input to the first encoder stage that trains, computed once with the frozen stages before it.

Training and re-embedding after a new adapter both start from these kept inputs; with the whole
encoder frozen the kept input is the image embedding, which an :class:`EmbeddingSource` (the
annotator's embedding cache) can supply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from segment_anything.modeling import Sam

from ..sam.preprocessing import model_input
from ..sam.stages import run_stages, stage_count
from .embeddings import BASE_ADAPTER_KEY, EmbeddingCache, EmbeddingKey, model_key, tag_predictor, tiling_for
from .images import image_content_hash

if TYPE_CHECKING:
    from ..sam.loading import LoadedModel


class EmbeddingSource(Protocol):
    """Where whole-image embeddings of frozen-encoder training can come from and go to."""

    def get(self, image: np.ndarray) -> torch.Tensor | None:
        """The whole-image embedding of ``image``, or None if there is none to reuse."""

    def put(self, image: np.ndarray, features: torch.Tensor) -> None:
        """Offer the embedding just computed for ``image`` to later runs and the annotator."""


class StageInputs:
    """Each image's block-k input, computed once with the frozen leading stages.

    ``features(i)`` runs the remaining stages (with gradients where they train). With the
    whole encoder frozen, the kept input is the embedding itself, and ``source`` can supply
    it from (and add it to) the annotator's cache. ``as_float32`` keeps them in float32 whatever the
    frozen stages computed in (for steps that run in float32).
    """

    def __init__(
        self,
        sam: Sam,
        images: Sequence[np.ndarray],
        stage: int,
        source: EmbeddingSource | None = None,
        as_float32: bool = False,
    ) -> None:
        self.sam = sam
        self.stage = stage
        self.whole_encoder_frozen = stage == stage_count(sam)
        self.computed = 0
        self.reused = 0
        self.inputs: list[torch.Tensor] = []
        with torch.no_grad():
            for image in images:
                kept = source.get(image) if source is not None and self.whole_encoder_frozen else None
                if kept is None:
                    kept = run_stages(sam.image_encoder, model_input(sam, image), 0, stage)
                    self.computed += 1
                    if source is not None and self.whole_encoder_frozen:
                        source.put(image, kept)
                else:
                    self.reused += 1
                self.inputs.append(kept.to(sam.device, torch.float32) if as_float32 else kept.to(sam.device))

    def __len__(self) -> int:
        return len(self.inputs)

    def features(self, index: int) -> torch.Tensor:
        """The image embedding of training image ``index``: the kept input through the remaining stages."""
        if self.whole_encoder_frozen:
            return self.inputs[index]
        return run_stages(self.sam.image_encoder, self.inputs[index], self.stage)


class CacheEmbeddingSource:
    """The annotator's embedding cache as a source of base-model embeddings for training.

    Only whole-image entries match (the annotator tiles large images; training does not), and
    only those made in ``precision``, the one the training's frozen stages run in (its embedding
    precision, see ``sam.precision``): a run reuses the embeddings of an annotator that embeds in the
    same precision on the same machine.
    """

    def __init__(self, cache: EmbeddingCache, model: LoadedModel, precision: str = "fp32") -> None:
        from segment_anything import SamPredictor

        self.cache = cache
        self.model = model
        self.precision = precision
        self.predictor = SamPredictor(model.sam)
        tag_predictor(self.predictor, model, BASE_ADAPTER_KEY)

    def _key(self, image: np.ndarray) -> EmbeddingKey | None:
        if tiling_for(image.shape, self.model.architecture.img_size)[0] is not None:
            return None
        return EmbeddingKey(
            image_content_hash(image), model_key(self.model), BASE_ADAPTER_KEY, precision=self.precision
        )

    def get(self, image: np.ndarray) -> torch.Tensor | None:
        """The whole-image embedding of ``image``, or None if there is none to reuse."""
        key = self._key(image)
        entry = self.cache.read(key) if key is not None else None
        return torch.from_numpy(entry["features"]) if entry is not None else None

    def put(self, image: np.ndarray, features: torch.Tensor) -> None:
        """Offer the embedding just computed for ``image`` to later runs and the annotator."""
        from segment_anything.utils.transforms import ResizeLongestSide

        key = self._key(image)
        if key is None:
            return
        size = self.model.architecture.img_size
        original = tuple(int(n) for n in image.shape[:2])
        entry = {
            "features": features.detach().float().cpu().numpy(),
            "input_size": ResizeLongestSide.get_preprocess_shape(*original, size),
            "original_size": original,
        }
        self.cache.store(self.predictor, image, key, entry)
