"""Automatic instance segmentation (AIS) with micro_sam's UNETR decoder on SAM's image embeddings.

:mod:`.decoder` builds the decoder (micro_sam's architecture and state-dict names, so its
``*_decoder`` weights load and ours load into micro_sam), :mod:`.targets` and :mod:`.loss` are
what joint training fits it to, and :mod:`.segmentation` turns its predictions into instances
(micro_sam's seeded watershed), tiled for large images.
"""

from .decoder import DECODER_KIND, build_decoder, decoder_state, registry_decoder_state
from .segmentation import instance_segmentation

__all__ = ["DECODER_KIND", "build_decoder", "decoder_state", "instance_segmentation", "registry_decoder_state"]
