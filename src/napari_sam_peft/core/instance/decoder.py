"""micro_sam's instance decoder: a UNETR decoder that reads SAM's image embeddings.

It predicts three maps (foreground, distance to the object centre, distance to the boundary);
:mod:`.segmentation` makes instances of them. The decoder's state dict uses micro_sam's names
(``UNETR`` keys without the encoder's), so micro_sam's ``*_decoder`` weights load here and the
weights trained here load into micro_sam (``get_decoder``, or an exported checkpoint's
``decoder_state``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import SamPeftError
from ..peft.adapter_file import DECODER_KIND

__all__ = ["DECODER_KIND", "build_decoder", "decoder_state", "registry_decoder_state"]


def build_decoder(sam: nn.Module, state: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """A decoder for ``sam``'s image embeddings, on its device; ``state`` None starts it untrained.

    The decoder shares nothing with ``sam``: training it leaves the model alone.

    Raises
    ------
    SamPeftError
        If ``state`` is not a decoder for this model's embeddings (wrong names or shapes).
    """
    from micro_sam.instance_segmentation import DecoderAdapter, get_unetr

    device = next(sam.parameters()).device
    try:
        unetr = get_unetr(sam.image_encoder, OrderedDict(state) if state is not None else None, device=device)
    except (RuntimeError, KeyError) as err:
        raise SamPeftError(
            f"The instance decoder's weights do not fit this model's image embeddings ({err}). Train the "
            "decoder on this model (Finetune: 'train the instance decoder')."
        ) from None
    decoder = DecoderAdapter(unetr).to(device)
    decoder.eval()
    return decoder


def decoder_state(decoder: nn.Module) -> dict[str, torch.Tensor]:
    """The decoder's tensors under micro_sam's names (detached copies on the CPU, float32)."""
    return {k: v.detach().to("cpu", torch.float32).clone() for k, v in decoder.state_dict().items()}


def registry_decoder_state(model_name: str) -> dict[str, torch.Tensor] | None:
    """micro_sam's pretrained decoder for a registry model (``vit_t_lm``: ``vit_t_lm_decoder``), or None.

    None when micro_sam has no decoder for the model. The weights download once into micro_sam's
    cache; they are read with ``weights_only=True``.

    Raises
    ------
    SamPeftError
        If the registry has a decoder but it cannot be fetched (offline).
    """
    from micro_sam.util import models

    registry = models()
    name = f"{model_name}_decoder"
    if name not in registry.registry:
        return None
    try:
        path = registry.fetch(name, progressbar=False)
    except Exception as err:  # pooch raises requests' and its own errors
        raise SamPeftError(
            f"micro_sam's decoder {name!r} could not be downloaded ({type(err).__name__}); automatic "
            "segmentation falls back to mask generation. Connect to the internet once, or train a decoder."
        ) from None
    return dict(torch.load(path, map_location="cpu", weights_only=True))
