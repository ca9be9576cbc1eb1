"""Building SAM 2.1 models with Meta's ``sam2`` package, from its own SAM 2.1 configuration.

``sam2.build_sam.build_sam2`` composes the package's Hydra configuration; every field of a
:class:`~.hiera_architecture.HieraArchitecture` goes in as an override of ``sam2.1_hiera_t.yaml``, so the four
sizes and the tiny test model are the same classes with other numbers, exactly as Meta builds them
(micro_sam's dev branch builds its ``hvit_*`` models the same way). The package is built without its
optional CUDA extension (hole filling in masks), which only post-processing uses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from ..errors import ModelNotAvailableError
from .hiera_architecture import HieraArchitecture

#: The package configuration every size is built from (the other three differ only in the fields overridden).
BASE_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def _list(values: tuple[int, ...]) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def config_overrides(architecture: HieraArchitecture) -> list[str]:
    """The Hydra overrides that turn :data:`BASE_CONFIG` into ``architecture``."""
    a = architecture
    trunk = "++model.image_encoder.trunk."
    neck = "++model.image_encoder.neck."
    attention = "++model.memory_attention."
    feat = a.img_size // 16
    return [
        f"++model.image_size={a.img_size}",
        f"{trunk}embed_dim={a.embed_dim}",
        f"{trunk}num_heads={a.num_heads}",
        f"{trunk}stages={_list(a.stages)}",
        f"{trunk}global_att_blocks={_list(a.global_att_blocks)}",
        f"{trunk}window_spec={_list(a.window_spec)}",
        f"{trunk}window_pos_embed_bkg_spatial_size={_list(a.window_pos_embed_bkg_spatial_size)}",
        f"{neck}d_model={a.prompt_embed_dim}",
        f"{neck}position_encoding.num_pos_feats={a.prompt_embed_dim}",
        f"{neck}backbone_channel_list={_list(a.stage_dims[::-1])}",
        f"{attention}d_model={a.prompt_embed_dim}",
        f"{attention}num_layers={a.memory_layers}",
        f"{attention}layer.d_model={a.prompt_embed_dim}",
        f"{attention}layer.dim_feedforward={a.memory_feedforward}",
        f"{attention}layer.self_attention.embedding_dim={a.prompt_embed_dim}",
        f"{attention}layer.self_attention.feat_sizes={_list((feat, feat))}",
        f"{attention}layer.cross_attention.embedding_dim={a.prompt_embed_dim}",
        f"{attention}layer.cross_attention.feat_sizes={_list((feat, feat))}",
        f"{attention}layer.cross_attention.kv_in_dim={a.memory_dim}",
        f"++model.memory_encoder.in_dim={a.prompt_embed_dim}",
        f"++model.memory_encoder.mask_downsampler.embed_dim={a.prompt_embed_dim}",
        f"++model.memory_encoder.out_dim={a.memory_dim}",
        f"++model.memory_encoder.position_encoding.num_pos_feats={a.memory_dim}",
        f"++model.memory_encoder.fuser.layer.dim={a.prompt_embed_dim}",
    ]


class _CpuLinspace:
    """``torch`` as Hiera's constructor sees it on the meta device: its drop-path rates are read
    with ``.item()``, which a meta tensor cannot give, so they are computed on the CPU."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)

    @staticmethod
    def linspace(*args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.linspace(*args, **{**kwargs, "device": "cpu"})


@contextlib.contextmanager
def _meta_safe_hiera(device: torch.device) -> Iterator[None]:
    if device.type != "meta":
        yield
        return
    from sam2.modeling.backbones import hieradet

    original = hieradet.torch
    hieradet.torch = _CpuLinspace()
    try:
        yield
    finally:
        hieradet.torch = original


def _sam2_builder() -> Callable[..., nn.Module]:
    """``sam2.build_sam.build_sam2``.

    Raises
    ------
    ModelNotAvailableError
        Where Meta's package is not installed, saying how to install it.
    """
    try:
        from sam2.build_sam import build_sam2
    except ImportError:
        raise ModelNotAvailableError(
            "SAM 2.1 models need Meta's sam2 package, which is not installed. Install it: "
            "SAM2_BUILD_CUDA=0 pip install --no-build-isolation 'sam2>=1.1' (or run scripts/install.sh again)."
        ) from None
    return build_sam2


def build_sam2_model(architecture: HieraArchitecture, device: str | torch.device | None = None) -> nn.Module:
    """An untrained ``SAM2Base`` of ``architecture`` in eval mode, with SAM 2's image post-processing
    settings (as ``build_sam2`` applies them for its image predictor), behind SAM's interface
    (``sam2_as_sam.as_sam_shaped``).

    ``device="meta"`` builds it without memory (to count parameters); ``None`` builds on the
    current default device (``with torch.device(...)``).

    Raises
    ------
    ModelNotAvailableError
        Where the ``sam2`` package is not installed.
    """
    build_sam2 = _sam2_builder()
    target = torch.device(device) if device is not None else torch.get_default_device()
    with _meta_safe_hiera(target), torch.device(target):
        model = build_sam2(
            config_file=BASE_CONFIG,
            ckpt_path=None,
            device=str(target),
            mode="eval",
            hydra_overrides_extra=config_overrides(architecture),
        )
    encoder: Any = model.get_submodule("image_encoder")
    encoder.image_size = architecture.img_size  # HieraFamily.input_size reads it
    from .sam2_as_sam import as_sam_shaped

    return as_sam_shaped(model)
