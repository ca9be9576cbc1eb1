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
    decoder, also the automatic segmentation's mSA (base: AMG; adapter: AIS); with validation volumes,
    the 3D scores (``volume``, and ``volume_ais`` with an instance decoder). None when the caller asked to
    stop meanwhile (checked after every image)."""
    from segment_anything import SamPredictor

    from ..evaluation.automatic import evaluate_automatic
    from ..evaluation.interactive import evaluate_interactive
    from ..instance import build_decoder

    def check(*_: int) -> None:
        if should_stop():
            raise _EvaluationStopped

    say(Evaluating(len(plan.val), plan.validation, plan.description))
    try:
        base = evaluate_interactive(SamPredictor(model.sam), plan.val, progress=check)
        if best.has_decoder:  # the automatic segmentation a user got before (AMG) against the new AIS
            base["ais"] = evaluate_automatic(SamPredictor(model.sam), None, plan.val, progress=check).msa
        base.update(_volume_scores(model, None, volumes, best.has_decoder, check))
        handle = best.attach_to(model)
        try:
            adapted = evaluate_interactive(SamPredictor(model.sam), plan.val, progress=check)
            if best.has_decoder:
                decoder = build_decoder(model.sam, best.decoder)
                adapted["ais"] = evaluate_automatic(SamPredictor(model.sam), decoder, plan.val, progress=check).msa
                adapted.update(_volume_scores(model, decoder, volumes, True, check))
            else:
                adapted.update(_volume_scores(model, None, volumes, False, check))
        finally:
            handle.detach()
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


def _volume_scores(
    model: LoadedModel,
    decoder: Any,
    volumes: list[tuple[Any, np.ndarray]],
    automatic: bool,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """``volume`` (and, when ``automatic``, ``volume_ais``) on the validation volumes; {} without any."""
    from segment_anything import SamPredictor

    from ..evaluation.volume import evaluate_volumes
    from ..volume.propagation import default_settings

    if not volumes:
        return {}
    settings = default_settings(model.architecture)  # the annotator's: box projection for LiteMedSAM
    scores = evaluate_volumes(
        SamPredictor(model.sam), decoder, volumes, settings=settings, automatic=automatic, progress=progress
    )
    result = {"volume": scores.volume}
    if automatic and scores.volume_ais is not None:
        result["volume_ais"] = scores.volume_ais
    return result
