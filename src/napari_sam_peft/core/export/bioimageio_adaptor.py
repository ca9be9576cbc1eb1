"""The architecture of a napari-sam-peft bioimage.io package: micro_sam's ``PredictorAdaptor`` around a SAM
built from the architecture the package records, so models micro_sam's registry does not name (LiteMedSAM's
256 px TinyViT, the demo model) run too.

This file is copied into each package as its architecture source (``weights.pytorch_state_dict.architecture``);
its environment installs napari-sam-peft and micro_sam. The weights are the merged SAM state dict, with the
instance decoder as ``{"model_state": ..., "decoder_state": ...}`` (micro_sam's finetuned checkpoints' layout):
called without prompts, a model with a decoder runs automatic instance segmentation.
"""

from __future__ import annotations

from micro_sam.bioimageio.predictor_adaptor import PredictorAdaptor
from segment_anything import SamPredictor
from torch import nn

from napari_sam_peft.core.sam.architecture import architecture_from_json, build_sam


class SamPeftPredictorAdaptor(PredictorAdaptor):
    """micro_sam's predictor adaptor (prompts in; masks, scores and embeddings out) on any SAM architecture.

    ``architecture`` is the JSON napari-sam-peft's adapter files record for their base model.
    """

    def __init__(self, architecture: str) -> None:
        nn.Module.__init__(self)  # PredictorAdaptor's own __init__ builds one of the registry's models
        self.sam_model = build_sam(architecture_from_json(architecture), device="cpu")
        self.sam = SamPredictor(self.sam_model)
        self.decoder = None
        self._cached_input = None
        self._cached_original_size = None
