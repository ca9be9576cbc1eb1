"""SAM architectures: building a model, reading the architecture off a checkpoint or a JSON record.

An architecture is a frozen dataclass of hyper-parameters of one encoder family
(:class:`~.encoder_family.Architecture`); the prompt encoder and mask decoder are SAM's, the
same for every family, and are built here. ``SamArchitecture`` and the named sizes are the ViT
family's (``vit.py``), re-exported for the many callers that knew them from here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import torch
from torch import nn

from ..errors import InvalidCheckpointError
from .encoder_family import Architecture
from .registry import (
    DEFAULT_FAMILY,
    FAMILIES,
    MICRO_SAM_ARCHITECTURES,
    NAMED_ARCHITECTURES,
    family_for,
    family_named,
    micro_sam_base,
)
from .vit import DEMO, TINY, VIT_B, VIT_H, VIT_L, VitArchitecture

#: The ViT family's architecture, under the name it had before encoder families.
SamArchitecture = VitArchitecture

__all__ = [
    "DEMO",
    "NAMED_ARCHITECTURES",
    "TINY",
    "VIT_B",
    "VIT_H",
    "VIT_L",
    "Architecture",
    "SamArchitecture",
    "VitArchitecture",
    "architecture_for_model_name",
    "architecture_from_json",
    "build_sam",
    "infer_architecture",
    "same_weight_shapes",
]


def architecture_for_model_name(name: str) -> Architecture:
    """The architecture of a micro_sam registry name such as ``vit_b_lm`` (its base model, ``vit_b``).

    Raises
    ------
    InvalidCheckpointError
        For a micro_sam model whose encoder napari-sam-peft does not support.
    """
    base = micro_sam_base(name)
    if base is None:
        *others, last = MICRO_SAM_ARCHITECTURES
        raise InvalidCheckpointError(
            f"Model {name!r} has an architecture napari-sam-peft does not support (its image encoder is of "
            f"another family). Choose a {', '.join(others)} or {last} model."
        )
    return MICRO_SAM_ARCHITECTURES[base]


def architecture_from_json(text: str) -> Architecture:
    """The architecture a model or adapter file records (a record without ``family`` is a ViT).

    Raises
    ------
    UnknownFamilyError
        For a family this version does not know.
    ValueError, TypeError
        For a damaged record.
    """
    values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError("an architecture record is a JSON object")
    return family_named(values.get("family", DEFAULT_FAMILY)).architecture_from_dict(values)


def infer_architecture(state: Mapping[str, torch.Tensor], name: str = "custom") -> Architecture:
    """Read the architecture off the tensor shapes of a SAM state dict, whatever its encoder family.

    Raises
    ------
    InvalidCheckpointError
        If the state dict is not that of a SAM model of a known encoder family (the message says
        which tensor is missing).
    """
    family = next((f for f in FAMILIES.values() if f.recognises(state)), FAMILIES[DEFAULT_FAMILY])
    return family.infer_architecture(state, name)


def same_weight_shapes(declared: Architecture, inferred: Architecture) -> bool:
    """Whether two architectures agree in everything tensor shapes show (``Architecture.weight_shapes``)."""
    return type(declared) is type(inferred) and declared.weight_shapes() == inferred.weight_shapes()


def build_sam(arch: Architecture, device: str | torch.device | None = None) -> nn.Module:
    """Build an untrained model of the given architecture, in eval mode: ``segment_anything``'s
    ``Sam`` for SAM 1 families, ``SAM2Base`` for SAM 2.1's.

    ``device="meta"`` builds it without allocating memory, which is how tests count the
    parameters of vit_b in milliseconds.
    """
    context = torch.device(device) if device is not None else torch.device("cpu")
    with context:
        model = family_for(arch).build_model(arch)
    return model.eval()
