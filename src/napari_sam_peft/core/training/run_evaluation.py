"""Base vs adapter at the end of a run: the paper's interactive protocol on the validation samples, the
automatic segmentation's mSA with an instance decoder, and the 3D scores of validation volumes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..evaluation.report import EvaluationReport
from ..peft import Adapter
from ..sam.loading import LoadedModel
from .events import Evaluating, Evaluation, Event
from .holdout import ValidationPlan


class _EvaluationStopped(Exception):
    """The caller asked to stop while the run was being evaluated."""


def evaluate_run(
    model: LoadedModel,
    best: Adapter,
    plan: ValidationPlan,
    validation: dict[str, Any],
    volumes: list[tuple[Any, np.ndarray]],
    say: Callable[[Event], None],
    should_stop: Callable[[], bool],
) -> EvaluationReport | None:
    """Base vs ``best`` with the paper's interactive protocol on the validation samples; with an instance
    decoder, also the automatic segmentation's mSA (base: AMG, or a registry model's decoder; adapter: AIS);
    with validation volumes,
    the 3D scores (``volume``, and ``volume_ais`` with an instance decoder). None when the caller asked to
    stop meanwhile (checked after every image)."""
    from ..evaluation.base_vs_adapter import evaluate_model

    def check(*_: int) -> None:
        if should_stop():
            raise _EvaluationStopped

    say(Evaluating(len(plan.val), plan.validation, plan.description))
    # the automatic scores when the instance decoder trained: the user's automatic segmentation before it
    # (mask generation, or a registry model's decoder) against the new AIS
    automatic = best.has_decoder
    try:
        base = evaluate_model(model, None, plan.val, volumes, automatic=automatic, progress=check).scores
        adapted = evaluate_model(model, best, plan.val, volumes, automatic=automatic, progress=check).scores
    except _EvaluationStopped:
        return None
    report = EvaluationReport(
        validation=plan.validation,
        measured_on=plan.description,
        images=validation["val_images"],
        objects=validation["val_objects"],
        base=base,
        adapter=adapted,
    )
    say(Evaluation.of(report))
    return report
