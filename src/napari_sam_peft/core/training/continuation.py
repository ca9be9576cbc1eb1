"""Continuing training from an adapter (a warm start) instead of from the base model.

A run with ``from_adapter`` starts from that adapter's tensors (and its instance decoder), so a user
who adds ten corrected images to a store of two hundred does not wait for the whole run again:

- :func:`load_parent` reads the parent file and refuses, with a message that says what to do, a
  corrupt file, another base model, or a method, blocks or options that differ from the run's.
- **Replay**: the parent records the store snapshot it was trained on; the store's journal is
  append-only, so :meth:`~..data.store.AnnotationStore.snapshot_at` finds that snapshot again and
  tells which objects were committed since. Training samples (images, or a volume's slices) with
  such an object are *new*: :data:`NEW_SHARE` of the steps draw one of them, the others draw from
  every training sample (old ones included, so what the parent learned keeps being trained on).
- The recommendation: :data:`CONTINUATION_LR_FACTOR` times the usual rate (the start is already a
  good model) and enough steps for about 25 passes over the new objects, within the usual bounds
  (:func:`continuation_steps`).

The new adapter's metadata names its parent's hash (``parent_adapter``), and the run record keeps the
parent's file and hash, so a chain of runs can be followed back.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.snapshot import Snapshot
from ..errors import SamPeftError
from ..peft import Adapter, PeftSpec
from ..peft.adapter_file import AdapterMismatchError
from ..peft.adapter_format import InvalidAdapterError
from ..peft.recommend import PASSES_OVER_OBJECTS, STEP_ROUNDING, recommended_steps
from ..sam.loading import LoadedModel
from .holdout import ValidationPlan, object_ids

#: the share of a continuation's steps that draw a new (or newly corrected) training sample
NEW_SHARE = 0.5
#: a continuation's recommended learning rate, as a factor of a run from the base model's
CONTINUATION_LR_FACTOR = 0.5
#: the fewest steps a continuation is recommended
MIN_CONTINUATION_STEPS = 50


def read_parent(path: str | os.PathLike[str]) -> Adapter:
    """The adapter file to continue from.

    Raises
    ------
    InvalidAdapterError
        For a missing, truncated, edited or foreign file (the message says to start from the base model).
    """
    try:
        return Adapter.load(path)
    except SamPeftError as error:
        raise InvalidAdapterError(
            f"Cannot continue from {Path(path).name}: {error} Choose another adapter, or train from the base "
            "model (without --from-adapter, or with 'continue from the live adapter' unchecked)."
        ) from None


def check_parent(parent: Adapter, name: str, model: LoadedModel, spec: PeftSpec) -> None:
    """Refuse to continue ``parent`` (file ``name``) on another base model or with another method.

    Raises
    ------
    AdapterMismatchError
        For another base model.
    SamPeftError
        For a method, blocks or options that differ from ``spec``'s.
    """
    if model.identity.content_hash != parent.base_model.content_hash:
        raise AdapterMismatchError(
            f"Cannot continue from {name}: it was trained on base model {parent.base_model.name!r}, but this run "
            f"trains {model.identity.name!r}. Train on {parent.base_model.name!r}, or start from the base model."
        )
    depth = model.architecture.depth
    if (parent.spec.method, parent.spec.blocks, parent.spec.options) != (spec.method, spec.blocks, spec.options):
        raise SamPeftError(
            f"Cannot continue from {name}: it was trained as {_spec_text(parent.spec, depth)}, but this run "
            f"trains {_spec_text(spec, depth)}. Choose the parent's preset, blocks and rank, or start from the "
            "base model."
        )


def _spec_text(spec: PeftSpec, depth: int) -> str:
    options = ", ".join(f"{k} {v}" for k, v in sorted(spec.options.to_dict().items()))
    return spec.describe(depth) + (f" with {options}" if options else "")


@dataclass
class Replay:
    """Which training samples are new since the parent, and how steps draw them.

    ``new`` is one flag per training sample; ``parent_found`` says whether the store still records the
    snapshot the parent was trained on (if not, every sample counts as new and all are drawn equally).
    """

    new: list[bool]
    parent_found: bool
    new_objects: int

    def weights(self) -> np.ndarray | None:
        """The probability of each training sample at a step; None: all equal (nothing new, or all new)."""
        n, n_new = len(self.new), sum(self.new)
        if n == 0 or n_new in (0, n):
            return None
        flags = np.asarray(self.new, dtype=float)
        return (1 - NEW_SHARE) / n + NEW_SHARE * flags / n_new

    def describe(self) -> str:
        """What the steps draw, in a sentence."""
        n, n_new = len(self.new), sum(self.new)
        if not self.parent_found:
            return (
                f"the parent was trained on data this store does not record, so all {n} training samples are "
                "drawn equally"
            )
        if n_new == 0:
            return f"nothing was committed since the parent: all {n} training samples are drawn equally"
        if n_new == n:
            return f"all {n} training samples are new since the parent and drawn equally"
        return (
            f"{n_new} of {n} training samples are new or corrected since the parent: {NEW_SHARE:.0%} of the steps "
            f"draw one of them, the others draw from all {n} (the parent's data stays in)"
        )

    def to_json(self) -> dict[str, Any]:
        """The record's summary: counts and the sentence."""
        return {
            "new_samples": sum(self.new),
            "samples": len(self.new),
            "new_objects": self.new_objects,
            "parent_found": self.parent_found,
            "replay": self.describe(),
        }


def continuation_steps(
    new_objects: int, train_objects: int, objects_per_image: int, passes: float = PASSES_OVER_OBJECTS
) -> int:
    """Steps recommended for a continuation: about ``passes`` (25; a recipe says) over the new objects, which
    :data:`NEW_SHARE` of the steps draw, in multiples of 50, at least :data:`MIN_CONTINUATION_STEPS` and at
    most what a run from the base model is recommended."""
    full = recommended_steps(train_objects, objects_per_image, passes)
    steps = passes * max(new_objects, 0) / max(objects_per_image, 1) / NEW_SHARE
    rounded = math.ceil(steps / STEP_ROUNDING) * STEP_ROUNDING
    return min(max(rounded, MIN_CONTINUATION_STEPS), full)


def shard_weights(weights: np.ndarray | None, rank: int, world: int) -> np.ndarray | None:
    """A rank's share of the sample weights (its samples are ``[rank::world]``), normalised again."""
    if weights is None or world == 1:
        return weights
    mine = weights[rank::world] if len(weights[rank::world]) else weights
    return mine / mine.sum()


def replay_since(
    parent: Snapshot | None, plan: ValidationPlan, origins: list[Any], by_id: dict[str, Any]
) -> Replay:
    """The :class:`Replay` of a continuation: which of the plan's training samples (``origins`` names each
    sample's image, ``by_id`` the stored images) hold an object committed since the ``parent`` snapshot."""
    known = {o.object_id for image in parent.images for o in image.objects} if parent is not None else set()
    new: list[bool] = []
    new_objects: set[str] = set()
    for (_, labels), index in zip(plan.train, plan.train_indices, strict=True):
        objects = by_id[origins[index].image_id].objects
        fresh = {objects[value - 1].object_id for value in object_ids(labels)} - known
        new.append(bool(fresh))
        new_objects |= fresh
    return Replay(new, parent is not None, len(new_objects))


def parent_summary(
    path: str | os.PathLike[str] | None, parent: Adapter | None, replay: Replay | None
) -> dict[str, Any]:
    """What the run record and the ``started`` event say of a continuation's parent ({} for none)."""
    if parent is None or replay is None:
        return {}
    return {"adapter": str(path), "hash": parent.identity, **replay.to_json()}
