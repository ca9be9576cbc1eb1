"""SAM 1's model around an image encoder: ``segment_anything``'s ``Sam`` with its prompt encoder and
mask decoder, the same for every SAM 1 encoder family (ViT, TinyViT).

:class:`SamOneModel` is the part of the encoder-family protocol those families share: how the whole
model is built and where its decoder is. SAM 2.1's family (``hiera.py``) answers the same questions
for ``SAM2Base``.
"""

from __future__ import annotations

from typing import Any

from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn

from .encoder_family import Architecture


def assemble_sam(encoder: nn.Module, arch: Architecture) -> Sam:
    """``Sam`` around ``encoder``, with the prompt encoder and mask decoder ``arch`` sizes
    (on the current default device, in eval mode)."""
    sam = Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=arch.prompt_embed_dim,
            image_embedding_size=(arch.embedding_size, arch.embedding_size),
            input_image_size=(arch.img_size, arch.img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=arch.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=arch.decoder_depth,
                embedding_dim=arch.prompt_embed_dim,
                mlp_dim=arch.decoder_mlp_dim,
                num_heads=arch.decoder_num_heads,
            ),
            transformer_dim=arch.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=arch.iou_head_hidden_dim,
        ),
        pixel_mean=list(arch.pixel_mean),
        pixel_std=list(arch.pixel_std),
    )
    return sam.eval()


class SamOneModel:
    """The model-level answers of a SAM 1 encoder family (mixed into ``VitFamily`` and ``TinyVitFamily``)."""

    #: parameter-name prefixes of the prompt encoder and mask decoder (what every encoder method trains too)
    decoder_prefixes = ("prompt_encoder.", "mask_decoder.")

    def build_encoder(self, architecture: Any) -> nn.Module:
        """The family's untrained image encoder (each family defines its own)."""
        raise NotImplementedError

    def build_model(self, architecture: Any) -> nn.Module:
        """``Sam`` around :meth:`build_encoder`'s encoder (see :func:`assemble_sam`)."""
        return assemble_sam(self.build_encoder(architecture), architecture)

    def mask_decoder(self, model: nn.Module) -> nn.Module:
        """``model.mask_decoder``."""
        return model.get_submodule("mask_decoder")
