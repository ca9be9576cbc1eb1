"""An adapter merged into its base model, as micro_sam's checkpoints hold a SAM model."""

from __future__ import annotations

from typing import Any

from ..peft import Adapter
from ..sam.loading import LoadedModel


def merged_checkpoint(adapter: Adapter, model: LoadedModel) -> dict[str, Any]:
    """The plain SAM state dict of ``model`` plus ``adapter`` (CPU tensors); with an instance decoder,
    ``{"model_state": ..., "decoder_state": ...}`` as micro_sam's finetuned checkpoints are.

    Raises
    ------
    AdapterMismatchError
        For an adapter of another base model.
    SamPeftError
        For a method that cannot be merged (AdaptFormer).
    """
    merged = {k: tensor.detach().cpu().contiguous() for k, tensor in adapter.merged_state_dict(model).items()}
    if adapter.has_decoder:
        return {"model_state": merged, "decoder_state": dict(adapter.decoder)}
    return merged
