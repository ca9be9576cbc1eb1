"""SAM 2.1 behind SAM's interface, so the annotator, training, evaluation and micro_sam's 2D functions
run a SAM 2.1 model exactly as they run SAM.

Everything else in the package (``SamPredictor``, micro_sam's prompt functions, embedding cache and
automatic mask generator, the training objective) calls ``sam.image_encoder(x)`` for one embedding
tensor and ``sam.mask_decoder(image_embeddings=...)`` for ``(masks, iou)``. SAM 2's decoder also reads
two high-resolution feature maps (1/4 and 1/8 of the input). So a SAM 2.1 model's encoder hands back
one tensor that *packs* all three, without loss, on the embedding grid:

- channels ``0..C``: the 1/16 embedding with ``no_mem_embed`` added (what ``SAM2ImagePredictor``
  prompts on), ``C`` the decoder's width (256);
- ``C..2C``: the 1/8 map (``conv_s1``'s ``C/4`` channels) folded 2 x 2 into channels;
- ``2C..4C``: the 1/4 map (``conv_s0``'s ``C/8`` channels) folded 4 x 4 into channels.

The decoder unpacks them when called SAM's way; the prompt encoder takes a box as SAM 2 does (two
corner points). Called SAM 2's way (by ``sam2``'s own video
predictor), both behave as Meta wrote them. The parameter names stay Meta's: the classes are
swapped in place (:func:`as_sam_shaped`), nothing is re-registered, so checkpoints, adapters and
parameter counts are those of ``SAM2Base``.

``conv_s0`` and ``conv_s1`` run when an image is embedded, as in ``SAM2ImagePredictor``, in the encoder's
last stage (the neck): a run that trains them (every preset that trains the whole mask decoder, as
``freeze_encoder``) runs the neck at each step from the kept stage input (``HieraFamily.last_stage_runs``).

Images are resized along the longest side and padded, as SAM's predictor does and micro_sam's dev
branch configures SAM 2's (``configure_image_predictor``).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch.nn.functional as F
from sam2.modeling.backbones.image_encoder import ImageEncoder
from sam2.modeling.sam.mask_decoder import MaskDecoder
from sam2.modeling.sam.prompt_encoder import PromptEncoder
from sam2.modeling.sam2_base import SAM2Base
from segment_anything.modeling import Sam
from torch import nn

from .internals import swap_class

#: SAM's (and ImageNet's) pixel statistics on 0-255 values; SAM 2 uses the same on 0-1 values.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def pack_features(embedding: torch.Tensor, high_res: list[torch.Tensor]) -> torch.Tensor:
    """The 1/16 embedding and the 1/4 and 1/8 maps (``[s0, s1]``) as one tensor on the embedding grid."""
    s0, s1 = high_res
    return torch.cat([embedding, F.pixel_unshuffle(s1, 2), F.pixel_unshuffle(s0, 4)], dim=1)


def unpack_features(packed: torch.Tensor, width: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The inverse of :func:`pack_features`: the embedding and ``[s0, s1]``; ``width`` is the decoder's."""
    embedding = packed[:, :width]
    s1 = F.pixel_shuffle(packed[:, width : 2 * width], 2)
    s0 = F.pixel_shuffle(packed[:, 2 * width :], 4)
    return embedding, [s0, s1]


class PackedImageEncoder(ImageEncoder):
    """SAM 2's image encoder whose call returns the packed embedding (see the module's docstring).

    :meth:`backbone` is Meta's forward (the dict ``SAM2Base.forward_image`` reads).
    """

    _owner: weakref.ReferenceType[SAM2Base]

    @property
    def img_size(self) -> int:
        """The square input side (``SamPredictor`` and SAM's ``preprocess`` read it)."""
        return int(self.image_size)

    def backbone(self, sample: torch.Tensor) -> dict[str, Any]:
        """Meta's ``ImageEncoder.forward``."""
        return ImageEncoder.forward(self, sample)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        """The packed embedding of a preprocessed image batch."""
        return self.head(self.trunk(sample))

    def head(self, stage_outputs: list[torch.Tensor]) -> torch.Tensor:
        """The packed embedding from the trunk's stage outputs: the neck, ``conv_s0``/``conv_s1`` on the
        1/4 and 1/8 maps, ``no_mem_embed`` on the 1/16 one (as ``SAM2ImagePredictor.set_image``)."""
        model = self._owner()
        assert model is not None, "the SAM 2.1 model of this encoder is gone"
        decoder: Any = model.sam_mask_decoder
        features, _ = self.neck(stage_outputs)
        if self.scalp > 0:
            features = features[: -self.scalp]
        s0, s1, top = features[-3:]
        embedding = top + model.no_mem_embed.reshape(1, -1, 1, 1)
        return pack_features(embedding, [decoder.conv_s0(s0), decoder.conv_s1(s1)])


class SamShapedMaskDecoder(MaskDecoder):
    """SAM 2's mask decoder that also takes SAM's call: a packed embedding, ``(masks, iou)`` back."""

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool | None = None,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> Any:
        """Meta's forward when ``repeat_image`` is given; SAM's otherwise (see the module's docstring)."""
        if repeat_image is not None:
            return MaskDecoder.forward(
                self,
                image_embeddings,
                image_pe,
                sparse_prompt_embeddings,
                dense_prompt_embeddings,
                multimask_output,
                repeat_image,
                high_res_features,
            )
        embedding, high_res = unpack_features(image_embeddings, self.transformer_dim)
        masks, iou, _tokens, _object_scores = MaskDecoder.forward(
            self,
            embedding,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            multimask_output,
            repeat_image=True,  # SAM's decoder always repeats the image over the prompts
            high_res_features=high_res,
        )
        return masks, iou


class BoxAsCornersPromptEncoder(PromptEncoder):
    """SAM 2's prompt encoder that takes a box as its two corner points (labels 2 and 3, before the other
    points, then a padding point), as SAM 2 was trained and as its image predictor prompts; given to
    ``boxes=`` (SAM's call) it would skip the padding point."""

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Meta's forward, with ``boxes`` moved into ``points``."""
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            labels = torch.tensor([[2, 3]], dtype=torch.int, device=boxes.device).expand(len(corners), -1)
            if points is not None:
                corners = torch.cat([corners, points[0]], dim=1)
                labels = torch.cat([labels, points[1].to(labels.dtype)], dim=1)
            points = (corners, labels)
        return PromptEncoder.forward(self, points=points, boxes=None, masks=masks)


class SamShapedSam2(SAM2Base):
    """``SAM2Base`` with SAM's ``image_encoder`` / ``prompt_encoder`` / ``mask_decoder`` interface."""

    mask_threshold = 0.0
    image_format = "RGB"

    @property
    def prompt_encoder(self) -> nn.Module:
        """``sam_prompt_encoder`` (SAM's prompt encoder class, same interface)."""
        return self.sam_prompt_encoder

    @property
    def mask_decoder(self) -> nn.Module:
        """``sam_mask_decoder``, taking SAM's call."""
        return self.sam_mask_decoder

    def __setstate__(self, state: dict[str, Any]) -> None:
        """After a copy (``copy.deepcopy``), the copy's encoder reads the copy's ``conv_s0``/``conv_s1``."""
        super().__setstate__(state)
        self.image_encoder._owner = weakref.ref(self)

    def forward_image(self, img_batch: torch.Tensor) -> dict[str, Any]:
        """Meta's, through the encoder's :meth:`PackedImageEncoder.backbone`."""
        backbone_out = self.image_encoder.backbone(img_batch)
        if self.use_high_res_features_in_sam:
            fpn = backbone_out["backbone_fpn"]
            fpn[0] = self.sam_mask_decoder.conv_s0(fpn[0])
            fpn[1] = self.sam_mask_decoder.conv_s1(fpn[1])
        return backbone_out

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """SAM's: normalise 0-255 pixels, pad to the square input (as ``SamPredictor`` expects)."""
        return Sam.preprocess(self, x)

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...]
    ) -> torch.Tensor:
        """SAM's: low-resolution masks to the original image size."""
        return Sam.postprocess_masks(self, masks, input_size, original_size)


def as_sam_shaped(model: SAM2Base) -> SamShapedSam2:
    """``model`` itself, its classes swapped to the SAM-shaped ones (parameters and names untouched)."""
    swap_class(model, SamShapedSam2)
    encoder: Any = model.image_encoder
    swap_class(encoder, PackedImageEncoder)
    encoder._owner = weakref.ref(model)
    swap_class(model.sam_mask_decoder, SamShapedMaskDecoder)
    swap_class(model.sam_prompt_encoder, BoxAsCornersPromptEncoder)
    device = model.no_mem_embed.device
    model.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN, device=device).view(-1, 1, 1), False)
    model.register_buffer("pixel_std", torch.tensor(PIXEL_STD, device=device).view(-1, 1, 1), False)
    return model
