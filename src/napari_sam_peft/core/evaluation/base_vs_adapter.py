"""One evaluation of a model, with or without an adapter: the end of a run, ``evaluate`` and both demos.

The paper's interactive protocol (Point, Box, I_P, I_B) on 2D samples; the automatic segmentation's mSA;
and, for volumes, the mSA of objects propagated through z and of the automatic 3D result. Which instance
decoder the automatic segmentation uses follows the annotator's rule (``session.live_model``): the
adapter's; for the base model of micro_sam's registry that has one (``vit_t_lm``, ...), micro_sam's; else
micro_sam's automatic mask generation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import SamPeftError
from ..peft import Adapter
from ..sam.loading import LoadedModel
from .automatic import AutomaticScore
from .volume import VolumeScore

Samples = Sequence[tuple[np.ndarray, np.ndarray]]
Progress = Callable[[int, int], None]
Phase = Callable[[str], None]

#: the parts of an evaluation, as :func:`evaluate_model` names them to its ``phase`` callback
INTERACTIVE, AUTOMATIC, VOLUMES = "interactive (point, box, corrections)", "automatic segmentation", "volumes"


@dataclass
class ModelScores:
    """What :func:`evaluate_model` measured: ``scores`` as the report's rows read them (``point``, ``box``,
    ``i_p``, ``i_b``, ``n_objects``, and ``ais``, ``volume``, ``volume_ais`` where measured), and the
    automatic segmentation's method and time."""

    scores: dict[str, float] = field(default_factory=dict)
    automatic: AutomaticScore | None = None
    volumes: VolumeScore | None = None


def automatic_decoder(model: LoadedModel, adapter: Adapter | None) -> Any:
    """The instance decoder the automatic segmentation uses (see the module's rule), or None (AMG).

    A registry decoder that cannot be fetched (offline) is no decoder: mask generation runs instead.
    """
    from ..instance import build_decoder, registry_decoder_state

    if adapter is not None:
        return build_decoder(model.sam, adapter.decoder) if adapter.has_decoder else None
    try:
        state = registry_decoder_state(model.identity.name)
    except SamPeftError:
        return None
    return build_decoder(model.sam, state) if state is not None else None


def evaluate_model(
    model: LoadedModel,
    adapter: Adapter | None,
    samples: Samples,
    volumes: Sequence[tuple[Any, np.ndarray]] = (),
    *,
    automatic: bool = True,
    automatic_2d: bool | None = None,
    n_iterations: int = 8,
    points_per_side: int | None = None,
    progress: Progress | None = None,
    phase: Phase | None = None,
) -> ModelScores:
    """Score ``model`` with ``adapter`` attached (None: the base) on ``samples`` (image, labels) and
    ``volumes`` (volume, 3D labels); the model is left as it was.

    ``automatic``: also the automatic segmentation (2D ``ais``; 3D ``volume_ais``); ``automatic_2d`` False
    leaves out the 2D one (the volume demo scores its slices interactively only). ``phase`` is called with
    the name of each part as it starts (:data:`INTERACTIVE`, :data:`AUTOMATIC`, :data:`VOLUMES`),
    ``progress`` after every image or volume of the part (it may raise to stop).
    """
    from segment_anything import SamPredictor

    from ..volume.propagation import default_settings
    from .automatic import evaluate_automatic
    from .interactive import evaluate_interactive
    from .volume import evaluate_volumes

    handle = adapter.attach_to(model) if adapter is not None else None
    try:
        predictor = SamPredictor(model.sam)
        if phase is not None:
            phase(INTERACTIVE)
        result = ModelScores(
            evaluate_interactive(predictor, samples, n_iterations=n_iterations, progress=progress)
        )
        decoder = automatic_decoder(model, adapter) if automatic else None
        if automatic and (automatic_2d is None or automatic_2d):
            if phase is not None:
                phase(AUTOMATIC)
            result.automatic = evaluate_automatic(
                predictor, decoder, samples, points_per_side=points_per_side, progress=progress
            )
            result.scores["ais"] = result.automatic.msa
        if volumes:
            if phase is not None:
                phase(VOLUMES)
            result.volumes = evaluate_volumes(
                predictor,
                decoder,
                volumes,
                settings=default_settings(model.architecture),  # the annotator's: box projection for LiteMedSAM
                points_per_side=points_per_side,
                automatic=automatic,
                progress=progress,
            )
            result.scores["volume"] = result.volumes.volume
            if result.volumes.volume_ais is not None:
                result.scores["volume_ais"] = result.volumes.volume_ais
        return result
    finally:
        if handle is not None:
            handle.detach()


def evaluate_base_and_adapter(
    model: LoadedModel,
    adapter: Adapter,
    samples: Samples,
    volumes: Sequence[tuple[Any, np.ndarray]] = (),
    **kwargs: Any,
) -> tuple[ModelScores, ModelScores]:
    """The base model's scores and the adapter's, on the same samples and volumes (see :func:`evaluate_model`)."""
    return evaluate_model(model, None, samples, volumes, **kwargs), evaluate_model(
        model, adapter, samples, volumes, **kwargs
    )
