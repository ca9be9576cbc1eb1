"""The modules PEFT methods put into SAM: each wraps one original module as ``.base``.

Every wrapper starts as the identity change (the model's output is unchanged at
initialisation), knows how to give back its original module (``base``) for detaching,
and, where the change is linear, how to fold itself into a plain module (``merged``)
that ``segment_anything`` loads without this package.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import SamPeftError


class MergeNotSupportedError(SamPeftError):
    """The adapter has a non-linear branch that cannot be folded into plain SAM weights."""


def _dequantized_weight(linear: nn.Linear) -> torch.Tensor:
    """The full-precision weight of a Linear, or of a bitsandbytes 4-bit Linear."""
    weight = linear.weight
    quant_state = getattr(weight, "quant_state", None)
    if quant_state is not None:
        import bitsandbytes.functional as bnb_functional

        return bnb_functional.dequantize_4bit(weight.data, quant_state)
    return weight.data


def plain_linear(linear: nn.Linear) -> nn.Linear:
    """A plain nn.Linear with the same (dequantized) weights."""
    weight = _dequantized_weight(linear)
    plain = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None, device=weight.device)
    plain.weight.data = weight.to(torch.float32).clone()
    if linear.bias is not None:
        plain.bias.data = linear.bias.data.to(torch.float32).clone()
    return plain


class PeftWrapper(nn.Module):
    """Base class: holds the original module as ``base``."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base: Any = base  # a Linear, LayerNorm, Conv2d or MLP: what each wrapper reads of it varies

    def merged(self) -> nn.Module:
        """A plain module computing what the wrapper computes (for exporting plain SAM weights)."""
        raise NotImplementedError


QKV = ("q", "k", "v")


def _qkv_view(t: torch.Tensor, groups: int) -> torch.Tensor:
    """A fused qkv output (..., 3 C) as (..., groups, 3, C / groups): q, k, v consecutive in each group."""
    return t.unflatten(-1, (groups, 3, -1))


def _with_parts(y: torch.Tensor, groups: int, deltas: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``y`` (a fused qkv output) with ``deltas[part]`` (..., C) added to the q, k or v channels."""
    grouped = _qkv_view(y, groups)
    pieces = []
    for index, name in enumerate(QKV):
        piece = grouped[..., index, :]
        if name in deltas:
            piece = piece + deltas[name].unflatten(-1, (groups, -1)).to(y.dtype)
        pieces.append(piece)
    return torch.stack(pieces, dim=-2).flatten(-3)


def _add_to_part(weight: torch.Tensor, groups: int, part: str, delta: torch.Tensor) -> None:
    """Add ``delta`` (C, in) to the rows of ``weight`` (3 C, in) that compute ``part`` of q, k, v."""
    rows = weight.view(groups, 3, -1, weight.shape[-1])
    rows[:, QKV.index(part)] += delta.view(groups, -1, weight.shape[-1])


class LoRALinear(PeftWrapper):
    """Low-rank update ``scale * B A x`` added to parts of a Linear's output.

    ``parts`` names output slices: for a fused qkv Linear they are ``q``, ``k`` and ``v``; their
    channels are consecutive thirds of each of ``groups`` equal groups of the output (SAM's ViT:
    one group; TinyViT: one per head). For any other Linear a single part ``""`` covers the whole
    output. ``B`` starts at zero, so the output is unchanged at initialisation. The scale is
    ``alpha / rank``; ``alpha = rank`` gives the paper's scale of 1.
    """

    def __init__(
        self, base: nn.Linear, rank: int, alpha: float, parts: Sequence[str] = ("",), groups: int = 1
    ) -> None:
        super().__init__(base)
        if rank <= 0:
            raise SamPeftError(f"LoRA rank must be a positive integer, not {rank}.")
        self.rank = int(rank)
        self.scale = float(alpha) / float(rank)
        self.groups = groups
        in_features, out_features = base.in_features, base.out_features
        self.fused = tuple(parts) != ("",)
        part_size = out_features // 3 if self.fused else out_features
        self.parts = tuple(parts)
        device = base.weight.device
        for part in self.parts:
            suffix = f"_{part}" if part else ""
            a = nn.Parameter(torch.empty(rank, in_features, device=device))
            b = nn.Parameter(torch.zeros(part_size, rank, device=device))
            if device.type != "meta":
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.register_parameter(f"lora_a{suffix}", a)
            self.register_parameter(f"lora_b{suffix}", b)

    def _pair(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        suffix = f"_{part}" if part else ""
        return getattr(self, f"lora_a{suffix}"), getattr(self, f"lora_b{suffix}")

    def _delta(self, x: torch.Tensor, part: str) -> torch.Tensor:
        a, b = self._pair(part)
        return (x.to(a.dtype) @ a.t()) @ b.t() * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The base module's output with the adapter's change."""
        y = self.base(x)
        if not self.fused:
            return y + self._delta(x, "").to(y.dtype)
        return _with_parts(y, self.groups, {part: self._delta(x, part) for part in self.parts})

    def weight_delta(self) -> torch.Tensor:
        """The dense update of the base weight, shape (out, in)."""
        delta = torch.zeros(self.base.out_features, self.base.in_features, device=self.lora_a_device())
        for part in self.parts:
            a, b = self._pair(part)
            update = (b.float() @ a.float()) * self.scale
            if self.fused:
                _add_to_part(delta, self.groups, part, update)
            else:
                delta += update
        return delta

    def lora_a_device(self) -> torch.device:
        """The device the LoRA matrices are on."""
        return self._pair(self.parts[0])[0].device

    def merged(self) -> nn.Linear:
        """The base module with the adapter folded into its weights."""
        plain = plain_linear(self.base)
        plain.weight.data += self.weight_delta().to(plain.weight.device)
        return plain


class FacTQKV(PeftWrapper):
    """FacT on a fused qkv: ``q += V S_q U x`` and ``v += V S_v U x``, dropout after S.

    ``U`` (d -> r) and ``V`` (r -> d) are shared by q and v within the block; ``V`` starts at
    zero so the output is unchanged at initialisation (the reference starts it at random).
    ``groups`` as for :class:`LoRALinear`.
    """

    def __init__(self, base: nn.Linear, rank: int, dropout: float = 0.1, groups: int = 1) -> None:
        super().__init__(base)
        if rank <= 0:
            raise SamPeftError(f"FacT rank must be a positive integer, not {rank}.")
        device = base.weight.device
        self.groups = groups
        # q and v are a third of the output each: as wide as the input in SAM's ViT, twice as wide
        # in the first block of a Hiera stage
        self.fact_u = nn.Parameter(torch.empty(rank, base.in_features, device=device))
        self.fact_v = nn.Parameter(torch.zeros(base.out_features // 3, rank, device=device))
        self.fact_s_q = nn.Parameter(torch.empty(rank, rank, device=device))
        self.fact_s_v = nn.Parameter(torch.empty(rank, rank, device=device))
        if device.type != "meta":
            for p in (self.fact_u, self.fact_s_q, self.fact_s_v):
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The base module's output with the adapter's change."""
        y = self.base(x)
        u = x.to(self.fact_u.dtype) @ self.fact_u.t()
        new_q = self.dropout(u @ self.fact_s_q.t()) @ self.fact_v.t()
        new_v = self.dropout(u @ self.fact_s_v.t()) @ self.fact_v.t()
        return _with_parts(y, self.groups, {"q": new_q, "v": new_v})

    def merged(self) -> nn.Linear:
        """The base module with the adapter folded into its weights."""
        plain = plain_linear(self.base)
        v, u = self.fact_v.data.float(), self.fact_u.data.float()
        _add_to_part(plain.weight.data, self.groups, "q", v @ self.fact_s_q.data.float() @ u)
        _add_to_part(plain.weight.data, self.groups, "v", v @ self.fact_s_v.data.float() @ u)
        return plain


class ScaleShift(PeftWrapper):
    """SSF: a per-channel ``scale`` and ``shift`` applied to a module's output.

    ``channel_dim`` is -1 for Linear and LayerNorm outputs and 1 for the patch embedding's
    convolution (N, C, H, W). Starts at scale 1 and shift 0 (the reference starts at random).
    """

    def __init__(self, base: nn.Module, channels: int, channel_dim: int = -1) -> None:
        super().__init__(base)
        device = _first_parameter(base).device
        self.ssf_scale = nn.Parameter(torch.ones(channels, device=device))
        self.ssf_shift = nn.Parameter(torch.zeros(channels, device=device))
        self.channel_dim = channel_dim

    def _shape(self, y: torch.Tensor) -> tuple[int, ...]:
        if self.channel_dim == -1:
            return (-1,)
        shape = [1] * y.dim()
        shape[self.channel_dim] = -1
        return tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The base module's output with the adapter's change."""
        y = self.base(x)
        shape = self._shape(y)
        return y * self.ssf_scale.view(shape).to(y.dtype) + self.ssf_shift.view(shape).to(y.dtype)

    def merged(self) -> nn.Module:
        """The base module with the adapter folded into its weights."""
        base = self.base
        scale, shift = self.ssf_scale.data.float(), self.ssf_shift.data.float()
        plain: Any
        if isinstance(base, (nn.LayerNorm, nn.Conv2d, nn.BatchNorm2d)):
            plain = copy.deepcopy(base).float()
        else:
            plain = plain_linear(base)
        weight_shape = (-1,) + (1,) * (plain.weight.dim() - 1)
        plain.weight.data = plain.weight.data * scale.view(weight_shape)
        bias = plain.bias.data if plain.bias is not None else torch.zeros_like(shift)
        if plain.bias is None:
            plain.bias = nn.Parameter(torch.zeros_like(shift))
        plain.bias.data = bias * scale + shift
        return plain


class ParallelAdapter(PeftWrapper):
    """AdaptFormer: ``mlp(x) + s * up(relu(down(x)))`` beside the block's MLP.

    ``s`` is a learnable scalar; ``up`` starts at zero so the output is unchanged at
    initialisation. Unlike the reference, no extra residual is added (the block already
    adds one). The ReLU branch cannot be merged into plain SAM weights.
    """

    def __init__(self, base: nn.Module, dim: int, projection_size: int = 64, dropout: float = 0.0) -> None:
        super().__init__(base)
        device = _first_parameter(base).device
        self.down = nn.Linear(dim, projection_size, device=device)
        self.up = nn.Linear(projection_size, dim, device=device)
        self.adapter_scale = nn.Parameter(torch.ones(1, device=device))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        if device.type != "meta":
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The base module's output with the adapter's change."""
        branch = self.up(self.dropout(torch.relu(self.down(x.to(self.down.weight.dtype)))))
        out = self.base(x)
        return out + (branch * self.adapter_scale).to(out.dtype)

    def merged(self) -> nn.Module:
        """Raises :class:`MergeNotSupportedError`: the ReLU branch has no plain equivalent."""
        raise MergeNotSupportedError(
            "AdaptFormer adds a non-linear (ReLU) branch that plain SAM weights cannot express, so it "
            "cannot be exported as a merged checkpoint. Use the adapter file with napari-sam-peft, or "
            "train a linear method (lora, late_lora, ssf, fact) for export."
        )


def _first_parameter(module: nn.Module) -> torch.Tensor:
    return next(module.parameters())
