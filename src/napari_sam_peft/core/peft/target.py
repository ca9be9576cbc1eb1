"""The model a PEFT method is attached to, seen through its encoder family.

The methods never name a layer of SAM's ViT: they ask an :class:`EncoderTarget` for the selected
blocks and, inside each, for the layers the family's :class:`BlockLayout` names (the fused qkv,
the MLP, the norms). A new encoder family therefore needs no change here or in the methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..sam.encoder_family import BlockLayout, EncoderFamily
from ..sam.registry import family_of, image_encoder_of

ENCODER = "image_encoder."


@dataclass
class EncoderTarget:
    """A SAM model (SAM 1 or SAM 2.1), its encoder family and the selected block indices."""

    sam: nn.Module
    blocks: tuple[int, ...]
    family: EncoderFamily = field(init=False)
    block_paths: list[str] = field(init=False)  # every block, relative to ``sam``

    def __post_init__(self) -> None:
        self.family = family_of(self.sam)
        self.block_paths = [ENCODER + path for path in self.family.block_paths(image_encoder_of(self.sam))]
        self._selected = tuple(self.block_paths[i] + "." for i in self.blocks)

    @property
    def layout(self) -> BlockLayout:
        """Where the method's layers are inside a block."""
        return self.family.layout

    @property
    def decoder_prefixes(self) -> tuple[str, ...]:
        """Parameter-name prefixes of the prompt encoder and mask decoder (every encoder method trains them)."""
        return self.family.decoder_prefixes

    @property
    def mask_decoder(self) -> nn.Module:
        """The model's mask decoder."""
        return self.family.mask_decoder(self.sam)

    @property
    def all_blocks(self) -> bool:
        """Whether every block is selected (then the stem, and for full finetuning the whole encoder, adapts)."""
        return len(self.blocks) == len(self.block_paths)

    def selected_blocks(self) -> list[nn.Module]:
        """The selected blocks, in order."""
        return [self.sam.get_submodule(self.block_paths[i]) for i in self.blocks]

    def in_selected_block(self, name: str) -> bool:
        """Whether a parameter (named as in plain SAM) lies inside a selected block."""
        return name.startswith(self._selected)

    def in_selected_part(self, name: str, parts: tuple[str, ...]) -> bool:
        """Whether a parameter lies under one of ``parts`` (layout paths) of a selected block."""
        return any(name.startswith(f"{block}{part}.") for block in self._selected for part in parts)

    def qkv_groups(self, qkv: nn.Module) -> int:
        """How q, k and v lie in a fused qkv output (see ``EncoderFamily.qkv_groups``)."""
        return self.family.qkv_groups(qkv)


def parent_and_attribute(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    """The module holding ``path`` (relative to ``root``) and the attribute it is under."""
    parent_path, _, attr = path.rpartition(".")
    return (root.get_submodule(parent_path) if parent_path else root), attr
