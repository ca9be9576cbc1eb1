"""Running SAM's image encoder in two parts, so frozen leading blocks run once per image.

The encoder is a chain of stages: the patch embedding (with the position embedding),
then each transformer block, then the neck. An adapter that leaves the first ``k`` stages
untouched cannot change their output, so the input of stage ``k`` (the "block-k input")
can be computed once per image and reused:

- training runs only stages ``k..`` (plus the decoder) at every step, and backpropagates
  only through them;
- after a new adapter is attached, re-embedding an image runs only stages ``k..``;
- when the whole encoder is frozen (``freeze_encoder``, ``decoder_lora``), ``k`` is past the
  neck and the block-k input *is* the image embedding.

This is the speed-up the paper measures: cost follows how far back the backward pass
reaches, not how many parameters train.
"""

from __future__ import annotations

import torch
from torch import nn

from ..peft import attached_to


def encoder_stages(sam: nn.Module) -> list[str]:
    """Module-name prefixes of the encoder's stages, in order (stage i has index i)."""
    depth = len(sam.image_encoder.blocks)
    return (
        ["image_encoder.patch_embed|image_encoder.pos_embed"]
        + [f"image_encoder.blocks.{i}" for i in range(depth)]
        + ["image_encoder.neck"]
    )


def frozen_prefix_stages(sam: nn.Module) -> int:
    """How many leading encoder stages neither train nor were changed by the attached adapter.

    0 means nothing can be cached; ``depth + 2`` means the whole encoder is frozen.
    """
    stages = encoder_stages(sam)
    touched: set[int] = set()

    def stage_of(name: str) -> int | None:
        for index, prefixes in enumerate(stages):
            for prefix in prefixes.split("|"):
                if name == prefix or name.startswith(prefix + "."):
                    return index
        return None

    for name, param in sam.named_parameters():
        if param.requires_grad and (index := stage_of(name)) is not None:
            touched.add(index)
    handle = attached_to(sam)
    if handle is not None:
        paths = {id(module): name for name, module in sam.named_modules()}
        for _parent, _attr, _original, wrapper in handle.replacements:
            if (name := paths.get(id(wrapper))) is not None and (index := stage_of(name)) is not None:
                touched.add(index)
        for module, _attr, _ in handle.quantized:
            if (name := paths.get(id(module))) is not None and (index := stage_of(name)) is not None:
                touched.add(index)
    return min(touched) if touched else len(stages)


def run_stages(encoder: nn.Module, x: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
    """Run encoder stages ``start..stop-1`` on ``x`` (the input of stage ``start``).

    Stage 0 takes the preprocessed image; running all stages equals ``encoder(x)``.
    """
    depth = len(encoder.blocks)
    stop = depth + 2 if stop is None else stop
    for stage in range(start, stop):
        if stage == 0:
            x = encoder.patch_embed(x)
            if encoder.pos_embed is not None:
                x = x + encoder.pos_embed
        elif stage <= depth:
            x = encoder.blocks[stage - 1](x)
        else:
            x = encoder.neck(x.permute(0, 3, 1, 2))
    return x


class StageInputCapture:
    """Record the input of one encoder stage while the encoder runs as a whole (e.g. in micro_sam).

    Use as a context manager around a normal embedding computation; ``captured`` then holds
    the stage input (detached, on the CPU) of the last image the encoder saw.
    """

    def __init__(self, sam: nn.Module, stage: int) -> None:
        self.sam = sam
        self.stage = stage
        self.captured: torch.Tensor | None = None
        self._handle = None

    def _module(self) -> nn.Module | None:
        encoder = self.sam.image_encoder
        depth = len(encoder.blocks)
        if self.stage == 0:
            return encoder.patch_embed
        if self.stage <= depth:
            return encoder.blocks[self.stage - 1]
        return encoder.neck

    def __enter__(self) -> StageInputCapture:
        depth = len(self.sam.image_encoder.blocks)
        if self.stage == depth + 2:  # past the neck: the input is the embedding itself
            self._handle = self.sam.image_encoder.register_forward_hook(self._keep_output)
        else:
            self._handle = self._module().register_forward_pre_hook(self._keep_input)
        return self

    def _keep_input(self, _module, args) -> None:
        x = args[0]
        depth = len(self.sam.image_encoder.blocks)
        if self.stage == depth + 1:  # the neck gets a channels-first view; keep blocks' layout
            x = x.permute(0, 2, 3, 1)
        self.captured = x.detach().to("cpu", copy=True)

    def _keep_output(self, _module, _args, output) -> None:
        self.captured = output.detach().to("cpu", copy=True)

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle = None
