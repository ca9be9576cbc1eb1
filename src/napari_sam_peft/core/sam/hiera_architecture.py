"""SAM 2.1's model sizes: the hyper-parameters of a SAM 2.1 model with a Hiera image encoder, micro_sam's
four named sizes (``hvit_t``, ``hvit_s``, ``hvit_b``, ``hvit_l``: SAM 2.1 Hiera tiny, small, base+ and
large), a tiny model for tests, and reading the size off a checkpoint.

``hiera.py`` is the family that uses them; ``sam2_model.py`` builds the models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..errors import InvalidCheckpointError
from .encoder_family import Architecture


@dataclass(frozen=True)
class HieraArchitecture(Architecture):
    """The hyper-parameters of a SAM 2.1 model with a Hiera image encoder.

    The decoder fields of :class:`Architecture` keep their defaults: ``SAM2Base`` fixes them (2 layers,
    MLP 2048, 8 heads, IoU head 256 wide, 3 masks); ``prompt_embed_dim`` is SAM 2's ``hidden_dim``
    (the neck's, the decoder's and the memory attention's width).
    """

    family: ClassVar[str] = "hiera"

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    #: the memory encoder's output channels (what the memory attention's keys read)
    memory_dim: int = 64
    memory_layers: int = 4
    memory_feedforward: int = 2048

    @property
    def depth(self) -> int:
        """The Hiera blocks of all four stages (12 for hvit_t)."""
        return sum(self.stages)

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding: the input over 16 (stage 3's grid; 64 for 1024 px)."""
        return self.img_size // 16

    @property
    def pixel_mean(self) -> tuple[float, float, float]:
        """SAM 2's ImageNet mean on the 0-1 scale, as 0-255 values (the same as SAM's)."""
        return (123.675, 116.28, 103.53)

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """The channels of each Hiera stage (doubling from ``embed_dim``)."""
        return tuple(self.embed_dim * 2**i for i in range(len(self.stages)))

    def block_summary(self) -> str:
        """Which blocks each Hiera stage holds, and which of them ``late`` adapts."""
        starts = np.cumsum((0, *self.stages))
        spans = [f"{a}" if b - a == 1 else f"{a}-{b - 1}" for a, b in zip(starts[:-1], starts[1:], strict=True)]
        late = f"{self.depth // 2}-{self.depth - 1}"
        return (
            f"Hiera stages at 1/4, 1/8, 1/16, 1/32 of the input: blocks {', '.join(spans)}; "
            f"late = blocks {late} (the mask decoder reads stages 1 and 2 directly, so late blocks change "
            "only the 1/16 embedding)"
        )

    def stage_of_block(self, block: int) -> int:
        """The Hiera stage (0-3) a block belongs to."""
        ends = np.cumsum(self.stages)
        return int(np.searchsorted(ends, block, side="right"))


HVIT_T = HieraArchitecture(name="hvit_t")
HVIT_S = HieraArchitecture(stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13), name="hvit_s")
HVIT_B = HieraArchitecture(
    embed_dim=112,
    num_heads=2,
    stages=(2, 3, 16, 3),
    global_att_blocks=(12, 16, 20),
    window_pos_embed_bkg_spatial_size=(14, 14),
    name="hvit_b",
)
HVIT_L = HieraArchitecture(
    embed_dim=144,
    num_heads=2,
    stages=(2, 6, 36, 4),
    global_att_blocks=(23, 33, 43),
    window_spec=(8, 4, 16, 8),
    name="hvit_l",
)
#: A SAM 2.1 model for unit tests (a forward pass takes milliseconds): 5 blocks, 128 px input.
TINY_HIERA = HieraArchitecture(
    img_size=128,
    prompt_embed_dim=32,
    embed_dim=16,
    num_heads=1,
    stages=(1, 1, 2, 1),
    global_att_blocks=(3,),
    window_spec=(4, 4, 4, 2),
    window_pos_embed_bkg_spatial_size=(4, 4),
    memory_dim=16,
    memory_layers=1,
    memory_feedforward=64,
    name="tiny_hiera",
)
SAM2_SIZES = (HVIT_T, HVIT_S, HVIT_B, HVIT_L)

_BLOCK_KEY = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")
_TRANSITION_KEY = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.proj\.weight$")


def infer_hiera_architecture(state: Mapping[str, torch.Tensor], name: str = "custom") -> HieraArchitecture:
    """Read the architecture off a SAM 2.1 state dict.

    Head counts, windows and global blocks do not show in tensor shapes, so the shapes must be
    those of one of SAM 2.1's four sizes (or the test model), and the architecture is named after it
    (``name`` is not used: a file of hvit_t's shapes is hvit_t, as micro_sam dev calls it).

    Raises
    ------
    InvalidCheckpointError
        If the state dict is not that of a SAM 2.1 model of a known size.
    """
    try:
        embed_dim = int(state["image_encoder.trunk.patch_embed.proj.weight"].shape[0])
        background = tuple(int(n) for n in state["image_encoder.trunk.pos_embed"].shape[2:])
        hidden = int(state["sam_mask_decoder.mask_tokens.weight"].shape[1])
    except KeyError as err:
        raise InvalidCheckpointError(
            f"This file is not a SAM 2.1 checkpoint: it has no tensor {err}. Choose one of Meta's "
            "sam2.1_hiera_*.pt files or a SAM 2.1 model saved by napari-sam-peft."
        ) from None
    depth = len({int(m.group(1)) for k in state if (m := _BLOCK_KEY.match(k))})
    # the first block of stages 2-4 widens the channels with a shortcut projection (``blocks.N.proj``)
    transitions = {int(m.group(1)) for k in state if (m := _TRANSITION_KEY.match(k))}
    starts = [0, *sorted(transitions)]
    stages = tuple(int(b - a) for a, b in zip(starts, [*starts[1:], depth], strict=True))
    for known in (*SAM2_SIZES, TINY_HIERA):
        if (known.embed_dim, known.stages, known.window_pos_embed_bkg_spatial_size, known.prompt_embed_dim) == (
            embed_dim,
            stages,
            background,
            hidden,
        ):
            return known  # by its size's name, whatever the file is called (as for SAM's vit_b, vit_l, vit_h)
    raise InvalidCheckpointError(
        f"This SAM 2.1 checkpoint has a Hiera of width {embed_dim} with stages {stages}, which is none of "
        "SAM 2.1's sizes (tiny, small, base+, large). napari-sam-peft loads those four."
    )
