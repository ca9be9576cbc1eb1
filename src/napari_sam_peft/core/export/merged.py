"""An adapter merged into its base model, as micro_sam's checkpoints hold a SAM model (and, for SAM 2.1,
as Meta's checkpoints hold one: ``{"model": state}``, which ``sam2``'s builder and micro_sam dev load)."""

from __future__ import annotations

from typing import Any

from ..peft import Adapter
from ..sam.loading import LoadedModel
from ..sam.registry import is_sam1


def merged_checkpoint(adapter: Adapter, model: LoadedModel) -> dict[str, Any]:
    """The plain SAM state dict of ``model`` plus ``adapter`` (CPU tensors); with an instance decoder,
    ``{"model_state": ..., "decoder_state": ...}`` as micro_sam's finetuned checkpoints are; for a SAM 2.1
    model ``{"model": ...}``, as Meta's SAM 2.1 checkpoints are.

    Raises
    ------
    AdapterMismatchError
        For an adapter of another base model.
    SamPeftError
        For a method that cannot be merged (AdaptFormer).
    """
    merged = {k: tensor.detach().cpu().contiguous() for k, tensor in adapter.merged_state_dict(model).items()}
    if not is_sam1(model.architecture):
        return {"model": merged}  # Meta's layout: sam2.build_sam.build_sam2(config, ckpt_path=...) reads it
    if adapter.has_decoder:
        return {"model_state": merged, "decoder_state": dict(adapter.decoder)}
    return merged
