"""The TinyViT image encoder as a module: MobileSAM's class with three changes (see ``tiny_vit``).

Built from MobileSAM's ``TinyViT`` (package ``mobilesam-mirror``, imported on first use), at the
sizes a :class:`~napari_sam_peft.core.sam.tiny_vit.TinyVitArchitecture` gives, with LiteMedSAM's
patch embedding where its ``variant`` says so; and TinyViT's forward split into stages.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any, Protocol

import torch
from torch import nn

from .internals import swap_class

MOBILE_SAM = "mobile_sam"
LITE_MEDSAM = "lite_medsam"


class TinyVitSizes(Protocol):
    """The sizes the encoder is built at (a :class:`~.tiny_vit.TinyVitArchitecture` has them)."""

    @property
    def img_size(self) -> int:
        """The input side in pixels."""

    @property
    def patch_stride(self) -> int:
        """Pixels per patch-grid cell."""

    @property
    def prompt_embed_dim(self) -> int:
        """The embedding width SAM's decoder takes."""

    @property
    def embed_dims(self) -> tuple[int, ...]:
        """Each stage's width."""

    @property
    def depths(self) -> tuple[int, ...]:
        """Each stage's block count."""

    @property
    def num_heads(self) -> tuple[int, ...]:
        """Each stage's attention heads."""

    @property
    def window_sizes(self) -> tuple[int, ...]:
        """Each stage's attention window."""

    @property
    def mlp_ratio(self) -> float:
        """MLP width over block width."""

    @property
    def mbconv_expand_ratio(self) -> float:
        """The first stage's MBConv expansion."""

    @property
    def variant(self) -> str:
        """MOBILE_SAM or LITE_MEDSAM (the patch embedding)."""

    @property
    def classifier_head(self) -> bool:
        """Whether the checkpoint has ImageNet's head."""


@cache
def _encoder_class() -> Any:
    """MobileSAM's TinyViT with the three changes of this module's docstring (imported on first use:
    ``mobile_sam`` pulls in timm, and warns about re-registering timm's TinyViT names)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mobile_sam.modeling.tiny_vit_sam import Attention, TinyViT

    class BiasReadingAttention(Attention):
        """MobileSAM's attention, reading its bias table on every call."""

        def train(self, mode: bool = True) -> nn.Module:
            return nn.Module.train(self, mode)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.ab = self.attention_biases[:, self.attention_bias_idxs]
            try:
                return super().forward(x)
            finally:
                del self.ab

    class TinyVitEncoder(TinyViT):
        """MobileSAM's TinyViT whose embedding grid follows the input and whose BatchNorms stay frozen."""

        attention_class = BiasReadingAttention

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            for stage in tiny_vit_stage_functions(self):
                x = stage(x)
            return x

        def train(self, mode: bool = True) -> nn.Module:
            super().train(mode)
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
            return self

    return TinyVitEncoder


def build_tiny_vit(arch: TinyVitSizes) -> nn.Module:
    """MobileSAM's TinyViT at ``arch``'s sizes (LiteMedSAM's patch embedding where it says so)."""
    target = torch.get_default_device()  # build_sam's device ("meta" when counting)
    with torch.device("cpu"):  # TinyViT's constructor reads a tensor's value, which "meta" has not
        encoder = _tiny_vit_on_cpu(arch)
    return encoder.to(target)


def _tiny_vit_on_cpu(arch: TinyVitSizes) -> Any:
    encoder_class = _encoder_class()
    from mobile_sam.modeling.tiny_vit_sam import Conv2d_BN, LayerNorm2d

    # TinyViT sizes its layers from the patch grid, input / 4: give it the grid LiteMedSAM has.
    encoder = encoder_class(
        img_size=arch.img_size * 4 // arch.patch_stride,
        in_chans=3,
        num_classes=1000 if arch.classifier_head else 0,
        embed_dims=list(arch.embed_dims),
        depths=list(arch.depths),
        num_heads=list(arch.num_heads),
        window_sizes=list(arch.window_sizes),
        mlp_ratio=arch.mlp_ratio,
        mbconv_expand_ratio=arch.mbconv_expand_ratio,
    )
    encoder.img_size = arch.img_size
    module: Any
    for module in encoder.modules():
        if type(module).__name__ == "Attention":
            swap_class(module, encoder_class.attention_class)
            module.qkv.head_count = module.num_heads  # what ``qkv_groups`` reads
    if arch.variant == LITE_MEDSAM:
        half = arch.embed_dims[0] // 2
        encoder.patch_embed.seq[0] = Conv2d_BN(3, half, 1, 1, 0)
        encoder.patch_embed.seq[2] = Conv2d_BN(half, arch.embed_dims[0], 1, 1, 0)
    if not arch.classifier_head:
        del encoder.norm_head, encoder.head
    width = arch.prompt_embed_dim
    encoder.neck = nn.Sequential(
        nn.Conv2d(arch.embed_dims[-1], width, kernel_size=1, bias=False),
        LayerNorm2d(width),
        nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(width),
    )
    return encoder


def tiny_vit_stage_functions(encoder: Any) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """What TinyViT's forward does, one stage at a time.

    The patch embedding and layer 0 work on (N, C, H, W); attention blocks on (N, L, C) tokens;
    a layer's patch merging (its ``downsample``) runs at the start of the next layer's first block.
    """
    layers = list(encoder.layers)

    def convolutions(x: torch.Tensor) -> torch.Tensor:
        for block in layers[0].blocks:
            x = block(x)
        return x

    def merged(merge: nn.Module, block: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: block(merge(x))

    def neck(x: torch.Tensor) -> torch.Tensor:
        side = math.isqrt(x.shape[1])
        return encoder.neck(x.reshape(x.shape[0], side, side, x.shape[2]).permute(0, 3, 1, 2))

    functions: list[Callable[[torch.Tensor], torch.Tensor]] = [encoder.patch_embed, convolutions]
    for previous, layer in zip(layers, layers[1:], strict=False):
        functions.append(merged(previous.downsample, layer.blocks[0]))
        functions.extend(layer.blocks[1:])
    functions.append(neck)
    return functions


def is_tiny_vit_encoder(encoder: Any) -> bool:
    """Whether ``encoder`` was built here (without importing ``mobile_sam`` for other encoders)."""
    return type(encoder).__name__ == "TinyVitEncoder" and isinstance(encoder, _encoder_class())
