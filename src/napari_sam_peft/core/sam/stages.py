"""Running SAM's image encoder in two parts, so frozen leading stages run once per image.

The encoder is a chain of stages, which its encoder family lists (for SAM's ViT: the patch
embedding with the position embedding, each transformer block, the neck). An adapter that leaves
the first ``k`` stages untouched cannot change their output, so the input of stage ``k`` (the
"block-k input") can be computed once per image and reused:

- training runs only stages ``k..`` (plus the decoder) at every step, and backpropagates
  only through them;
- after a new adapter is attached, re-embedding an image runs only stages ``k..``;
- when the whole encoder is frozen (``freeze_encoder``, ``decoder_lora``), ``k`` is past the
  last stage and the block-k input *is* the image embedding.

This is the speed-up the paper measures: cost follows how far back the backward pass
reaches, not how many parameters train. Which stages an attached adapter touches is the PEFT
package's to say (``peft.frozen_prefix_stages``); this module runs and captures stages.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .registry import family_of, image_encoder_of

ENCODER = "image_encoder."


def encoder_stages(sam: nn.Module) -> list[tuple[str, ...]]:
    """Module and parameter paths (relative to ``sam``) of the encoder's stages, in order.

    A family whose last stage also runs modules outside the encoder names them in ``last_stage_runs``
    (SAM 2.1: the mask decoder's ``conv_s0``/``conv_s1``, which project the high-resolution maps when an
    image is embedded): training them keeps that stage running at each step.
    """
    family = family_of(sam)
    stages = [tuple(ENCODER + path for path in stage) for stage in family.stages(image_encoder_of(sam))]
    stages[-1] += tuple(getattr(family, "last_stage_runs", ()))
    return stages


def stage_count(sam: nn.Module) -> int:
    """How many stages the encoder has: a stage index equal to it means "past the last stage"."""
    return len(family_of(sam).stages(image_encoder_of(sam)))


def first_stage_touched(sam: nn.Module, names: Iterable[str]) -> int:
    """The first stage holding any of ``names`` (parameter or module paths relative to ``sam``);
    :func:`stage_count` when none is in the encoder."""
    stages = encoder_stages(sam)

    def stage_of(name: str) -> int | None:
        for index, prefixes in enumerate(stages):
            if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
                return index
        return None

    touched = [index for name in names if (index := stage_of(name)) is not None]
    return min(touched) if touched else len(stages)


def run_stages(encoder: nn.Module, x: torch.Tensor, start: int, stop: int | None = None) -> torch.Tensor:
    """Run encoder stages ``start..stop-1`` on ``x`` (the input of stage ``start``).

    Stage 0 takes the preprocessed image; running all stages equals ``encoder(x)``.
    """
    functions = family_of(encoder).stage_functions(encoder)
    for function in functions[start:stop]:
        x = function(x)
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
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> StageInputCapture:
        encoder = image_encoder_of(self.sam)
        family = family_of(encoder)
        if self.stage == stage_count(self.sam):  # past the last stage: the input is the embedding itself
            self._handles = [encoder.register_forward_hook(self._keep_output)]
        elif hasattr(family, "stage_input_hooks"):  # a stage input of several tensors (SAM 2.1's Hiera)
            self._handles = family.stage_input_hooks(encoder, self.stage, self._keep)
        else:
            module, to_stage_input = family.stage_entry(encoder, self.stage)

            def keep_input(_module: nn.Module, args: tuple[Any, ...]) -> None:
                self._keep(to_stage_input(args[0]))

            self._handles = [module.register_forward_pre_hook(keep_input)]
        return self

    def _keep(self, stage_input: torch.Tensor) -> None:
        self.captured = stage_input.detach().to("cpu", copy=True)

    def _keep_output(self, _module: nn.Module, _args: tuple[Any, ...], output: torch.Tensor) -> None:
        self._keep(output)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
