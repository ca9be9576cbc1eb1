"""The architecture of a napari-sam-peft bioimage.io package: micro_sam's ``PredictorAdaptor`` around a SAM
built from the architecture the package records, so models micro_sam's registry does not name (LiteMedSAM's
256 px TinyViT, the demo model) run too.

Each package holds a one-line architecture source (:func:`package_source`) that imports
:func:`sam_peft_predictor_adaptor` from this module; its environment installs napari-sam-peft and micro_sam.
The weights are the merged SAM state dict, with the instance decoder as ``{"model_state": ...,
"decoder_state": ...}``: called without prompts, a model with a decoder runs automatic instance segmentation.
"""

from __future__ import annotations

from torch import nn

from ..sam.architecture import architecture_from_json, build_sam
from ..sam.internals import predictor_adaptor_around


def sam_peft_predictor_adaptor(architecture: str) -> nn.Module:
    """micro_sam's predictor adaptor (prompts in; masks, scores and embeddings out) on the SAM of
    ``architecture``: the JSON napari-sam-peft's adapter files record for their base model."""
    return predictor_adaptor_around(build_sam(architecture_from_json(architecture), device="cpu"))


def package_source() -> str:
    """The architecture file a package carries: it imports the factory above from the installed package."""
    return (
        '"""A SAM finetuned with napari-sam-peft: micro_sam\'s PredictorAdaptor around its architecture."""\n'
        f"from {__name__} import sam_peft_predictor_adaptor  # noqa: F401\n"
    )
