"""The architecture of a napari-sam-peft bioimage.io package: micro_sam's ``PredictorAdaptor`` around a SAM
built from the architecture the package records, so models micro_sam's registry does not name (LiteMedSAM's
256 px TinyViT, the demo model) run too.

This file is copied into each package as its architecture source (``weights.pytorch_state_dict.architecture``,
callable :func:`sam_peft_predictor_adaptor`); its environment installs napari-sam-peft and micro_sam. The
weights are the merged SAM state dict, with the instance decoder as ``{"model_state": ..., "decoder_state":
...}`` (micro_sam's finetuned checkpoints' layout): called without prompts, a model with a decoder runs
automatic instance segmentation. micro_sam is imported only when the model is built (importing
``micro_sam.bioimageio`` imports napari).
"""

from __future__ import annotations

from torch import nn


def sam_peft_predictor_adaptor(architecture: str) -> nn.Module:
    """micro_sam's predictor adaptor (prompts in; masks, scores and embeddings out) on the SAM of
    ``architecture``: the JSON napari-sam-peft's adapter files record for their base model."""
    from napari_sam_peft.core.sam.architecture import architecture_from_json, build_sam
    from napari_sam_peft.core.sam.internals import predictor_adaptor_around

    return predictor_adaptor_around(build_sam(architecture_from_json(architecture), device="cpu"))
