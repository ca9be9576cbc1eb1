"""SAM 2.1's Hiera encoder in stages, for the frozen-prefix cache: the stem, each block, the neck.

Hiera's neck reads the output of each of the trunk's four stages, so the input of block ``k`` is more
than the block's own input: it is that tensor plus the outputs of the stages finished before block
``k``. A stage's input is therefore a *carry*: all of them flattened into one ``(B, N)`` tensor
(:func:`pack_carry`), whose shapes follow from the encoder (:func:`carry_shapes`). The last stage
runs the neck on the stage outputs and hands back the packed embedding (``sam2_as_sam``), so running
every stage equals the encoder's call.

A carry is larger than a ViT's block input: at block 6 of hvit_t (the first of ``late``) it holds the
1/16 map and the 1/4 and 1/8 stage outputs, about 11 M floats (44 MB) an image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .internals import hiera_position_embedding

Shape = tuple[int, ...]
CarryShapes = tuple[Shape, list[Shape]]


def carry_shapes(encoder: Any, block: int) -> CarryShapes:
    """The shape (without batch) of block ``block``'s input (H, W, C) and of each stage output finished
    before it (C, H, W); ``block`` equal to the depth is the neck's input."""
    trunk = encoder.trunk
    side = int(encoder.image_size) // 4  # the patch embedding's stride
    outputs: list[Shape] = []
    dim = trunk.blocks[0].dim
    for index, blk in enumerate(trunk.blocks[:block]):
        if blk.q_stride is not None:
            side //= blk.q_stride[0]
        dim = blk.dim_out
        if index in trunk.stage_ends:
            outputs.append((dim, side, side))
    if block < len(trunk.blocks):
        dim = trunk.blocks[block].dim
    return (side, side, dim), outputs


def pack_carry(x: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    """A block's input and the finished stage outputs as one ``(B, N)`` tensor."""
    return torch.cat([x.flatten(1), *[o.flatten(1) for o in outputs]], dim=1)


def unpack_carry(
    carry: torch.Tensor, shapes: tuple[Shape, list[Shape]]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The inverse of :func:`pack_carry` for :func:`carry_shapes`' ``shapes``."""
    x_shape, output_shapes = shapes
    sizes = [math.prod(x_shape), *[math.prod(s) for s in output_shapes]]
    parts = torch.split(carry, sizes, dim=1)
    batch = carry.shape[0]
    x = parts[0].reshape(batch, *x_shape)
    return x, [p.reshape(batch, *s) for p, s in zip(parts[1:], output_shapes, strict=True)]


def stage_functions(encoder: Any) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """The stem (image to carry), each block (carry to carry), the neck (carry to packed embedding)."""
    trunk = encoder.trunk
    depth = len(trunk.blocks)

    def stem(image: torch.Tensor) -> torch.Tensor:
        x = trunk.patch_embed(image)
        return pack_carry(x + hiera_position_embedding(trunk, x.shape[1:3]), [])

    def block_function(index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        shapes = carry_shapes(encoder, index)

        def run(carry: torch.Tensor) -> torch.Tensor:
            x, outputs = unpack_carry(carry, shapes)
            x = trunk.blocks[index](x)
            if index in trunk.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
            return pack_carry(x, outputs)

        return run

    neck_shapes = carry_shapes(encoder, depth)

    def neck(carry: torch.Tensor) -> torch.Tensor:
        _, outputs = unpack_carry(carry, neck_shapes)
        return encoder.head(outputs)

    return [stem, *[block_function(i) for i in range(depth)], neck]


def stage_input_hooks(encoder: Any, stage: int, keep: Callable[[torch.Tensor], None]) -> list[RemovableHandle]:
    """Hooks that hand ``keep`` the carry of ``stage`` (1 = block 0, depth + 1 = the neck) while the
    encoder runs as a whole: the stage outputs are collected as the blocks finish them."""
    trunk = encoder.trunk
    depth = len(trunk.blocks)
    outputs: list[torch.Tensor] = []
    block = stage - 1

    def clear(_module: nn.Module, _args: tuple[Any, ...]) -> None:
        outputs.clear()

    def collect(_module: nn.Module, _args: tuple[Any, ...], out: torch.Tensor) -> None:
        outputs.append(out.permute(0, 3, 1, 2))

    handles = [trunk.patch_embed.register_forward_pre_hook(clear)]
    handles += [trunk.blocks[e].register_forward_hook(collect) for e in trunk.stage_ends if e < block]
    if block < depth:
        handles.append(
            trunk.blocks[block].register_forward_pre_hook(lambda _m, args: keep(pack_carry(args[0], outputs)))
        )
    else:  # the neck's input is the list of stage outputs; the last one is the last block's output
        handles.append(
            encoder.neck.register_forward_pre_hook(
                lambda _m, args: keep(pack_carry(args[0][-1].permute(0, 2, 3, 1), list(args[0])))
            )
        )
    return handles
