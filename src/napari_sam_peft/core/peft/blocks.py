"""Placement: which image-encoder blocks a PEFT method adapts.

The paper's finding is that placement, not method type, sets memory and time: the
backward pass reaches only as far back as the first adapted block. Every encoder
method therefore takes a block selection, written as:

- ``"all"``; ``"late"`` (the second half: blocks 6-11 of vit_b);
- ``"last 6"``, ``"first 2"``;
- ``"11"``, ``"6-11"``, ``"0,3,5-7"``; negative numbers count from the end (``"-1"`` = last).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import SamPeftError


class InvalidBlocksError(SamPeftError):
    """A block selection that does not parse or names blocks the model does not have."""


_RANGE = re.compile(r"^(-?\d+)\s*-\s*(-?\d+)$")


def parse_blocks(spec: str | Iterable[int] | None, depth: int) -> tuple[int, ...]:
    """Turn a block selection into sorted, unique block indices for a model of ``depth`` blocks.

    Raises
    ------
    InvalidBlocksError
        With the valid range and examples, for anything that does not parse or is out of range.
    """
    if spec is None:
        return tuple(range(depth))
    if not isinstance(spec, str):
        indices = [int(i) for i in spec]
    else:
        indices = _parse_text(spec.strip().lower(), depth)
    resolved = sorted({i + depth if i < 0 else i for i in indices})
    bad = [i for i in resolved if not 0 <= i < depth]
    if bad or not resolved:
        what = f"block {bad[0]} does not exist" if bad else "it selects no block"
        raise InvalidBlocksError(
            f"Block selection {spec!r} is not valid: {what}. This model has blocks 0-{depth - 1}; "
            "write e.g. 'all', 'late', 'last 6', '11' or '6-11'."
        )
    return tuple(resolved)


def _parse_text(text: str, depth: int) -> list[int]:
    if text in ("all", "*", ""):
        return list(range(depth))
    if text == "late":
        return list(range(depth // 2, depth))
    words = text.split()
    if len(words) == 2 and words[0] in ("last", "first") and words[1].isdigit():
        n = int(words[1])
        if not 0 < n <= depth:
            raise InvalidBlocksError(
                f"Block selection {text!r} is not valid: choose between 1 and {depth} blocks."
            )
        return list(range(depth - n, depth)) if words[0] == "last" else list(range(n))
    indices: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if match := _RANGE.match(part):
            start, stop = (int(g) for g in match.groups())
            start, stop = (start + depth if start < 0 else start), (stop + depth if stop < 0 else stop)
            if stop < start:
                raise InvalidBlocksError(f"Block range {part!r} runs backwards; write it as '{stop}-{start}'.")
            indices.extend(range(start, stop + 1))
        elif re.fullmatch(r"-?\d+", part):
            indices.append(int(part))
        else:
            raise InvalidBlocksError(
                f"Block selection {text!r} is not valid. Write e.g. 'all', 'late', 'last 6', '11' or '6-11' "
                f"(this model has blocks 0-{depth - 1})."
            )
    return indices


def format_blocks(blocks: Iterable[int], depth: int | None = None) -> str:
    """A compact description such as ``"6-11"`` or ``"0,2,5-7"`` (``"all"`` when every block)."""
    blocks = sorted(set(blocks))
    if depth is not None and blocks == list(range(depth)):
        return "all"
    if not blocks:
        return "none"
    parts, start, prev = [], blocks[0], blocks[0]
    for b in blocks[1:] + [None]:
        if b is not None and b == prev + 1:
            prev = b
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if b is not None:
            start = prev = b
    return ",".join(parts)
