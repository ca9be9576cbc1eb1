"""The training loop: a PEFT adapter trained with the paper's objective (see :mod:`.objective`).

Each step takes one training image and up to ``objects_per_image`` objects. AdamW, a plateau schedule
(factor 0.9, patience 10) and early stopping on the validation score (mean IoU of box
prompts on the validation objects).

Frozen leading encoder stages run once per image (see :mod:`..sam.stages`): each step runs
only the adapted blocks, the neck and the decoder. With the whole encoder frozen
(``freeze_encoder``, ``decoder_lora``) training runs from image embeddings alone, and an
``EmbeddingSource`` lets it reuse (and fill) the annotator's embedding cache.

Under ``torch.distributed`` (``torchrun``), each rank trains on its own stream of images and
the trainable modules are wrapped in DistributedDataParallel; rank 0 reports and writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch import nn

from ..annotation.stage_inputs import EmbeddingSource, StageInputs
from ..errors import SamPeftError
from ..instance.decoder import build_decoder, decoder_state
from ..instance.loss import InstanceObjective
from ..peft import Adapter, AttachedPeft, PeftSpec, attach, frozen_prefix_stages
from ..sam.loading import LoadedModel
from ..sam.precision import Precision, resolve_precision
from ..sam.precision_probe import model_probe
from .distributed import any_rank, distributed_rank
from .events import TrainingEvent
from .job import TrainingJob
from .objective import Backward, Sample, objective, validation_score
from .plan import NO_TRAINING_OBJECTS, Schedule
from .recipe import PAPER  # a config made without a schedule takes the paper's recipe

#: AdamW's rate for the instance decoder (trained from scratch, unlike the adapter's small updates)
DECODER_LR = 5e-4

#: the defaults a user can change live in one place: the run's schema
_CHOSEN: dict[str, Any] = {f.name: f.default for f in fields(TrainingJob)}


@dataclass
class TrainingConfig:
    """The loop's hyperparameters; those a user chooses default to :class:`TrainingJob`'s values."""

    steps: int = 200  # a run without a count takes ``peft.recommend.recommended_steps`` for its data
    lr: float = 1e-5  # the paper's; a run without one takes ``peft.recommend.recommended_lr``
    objects_per_image: int = PAPER.objects_per_image
    sub_iterations: int = PAPER.sub_iterations
    validate_every: int = PAPER.validate_every
    precision: str = _CHOSEN["precision"]  # see ``sam.precision``: auto measures the model on the hardware
    with_decoder: bool = _CHOSEN["with_decoder"]  # train micro_sam's instance decoder jointly (AIS)
    patience: int = 10  # validations without improvement before stopping early
    seed: int = _CHOSEN["seed"]

    @classmethod
    def of(cls, job: TrainingJob, schedule: Schedule) -> TrainingConfig:
        """A run's settings: the job's choices, with the recipe, rate and steps its schedule resolved."""
        return cls(
            steps=schedule.steps,
            lr=schedule.lr,
            objects_per_image=schedule.objects_per_image,
            sub_iterations=schedule.sub_iterations,
            validate_every=schedule.validate_every,
            precision=job.precision,
            with_decoder=job.with_decoder,
            seed=job.seed,
        )


class _Objective(nn.Module):
    """The trainable model with the loss as its forward, so DistributedDataParallel can wrap it."""

    def __init__(
        self, sam: Sam, inputs: StageInputs, config: TrainingConfig, instance: InstanceObjective | None = None
    ) -> None:
        super().__init__()
        self.sam = sam
        self.inputs = inputs
        self.config = config
        self.instance = instance
        self.decoder = instance.decoder if instance is not None else None  # a submodule, for DDP

    def forward(
        self, index: int, labels: np.ndarray, rng: np.random.Generator, backward: Backward | None = None
    ) -> torch.Tensor:
        embeddings = self.inputs.features(index)
        config, instance = self.config, self.instance
        instance_loss = (lambda e: instance.loss(e, index, rng)) if instance is not None else None
        return objective(
            self.sam,
            embeddings,
            labels,
            rng,
            config.objects_per_image,
            config.sub_iterations,
            backward,
            instance_loss,
        )


@dataclass
class TrainingHooks:
    """How a caller follows and steers a run; every hook is optional and runs on rank 0 only.

    ``on_prepared`` is called once the frozen stages have run on every image (before the first
    step), ``on_baseline`` with the validation score of the model training starts from (the base, or
    the adapter it continues), ``on_event`` after every step, ``on_best`` with each new best adapter
    (write it, attach it live); ``should_stop`` is polled every step and ends training at once with
    the best adapter so far (validating only when there is none yet).
    """

    on_event: Callable[[TrainingEvent], None] | None = None
    on_best: Callable[[Adapter], None] | None = None
    on_prepared: Callable[[StageInputs], None] | None = None
    on_baseline: Callable[[float], None] | None = None
    should_stop: Callable[[], bool] | None = None


class _BestAdapter:
    """The best adapter so far by validation score, and how many validations have not beaten it."""

    def __init__(
        self,
        handle: AttachedPeft,
        model: LoadedModel,
        snapshot: str,
        report: bool,
        hooks: TrainingHooks,
        decoder: nn.Module | None = None,
    ):
        self.handle, self.model, self.snapshot, self.decoder = handle, model, snapshot, decoder
        self.report, self.hooks = report, hooks
        self.adapter: Adapter | None = None
        self.parent = ""  # the hash of the adapter the run continues, if it continues one
        self.score: float | None = None
        self.start_score: float | None = None  # the model's validation score before training, if measured
        self.stale = 0

    def measure_start(self, score: Callable[[], float], precision: Precision) -> None:
        """Validate the model training starts from, what each new best is measured against (when the caller
        wants to hear it: ``on_baseline``)."""
        if self.hooks.on_baseline is not None and self.report:
            with precision.autocast():
                self.start_score = score()
            self.hooks.on_baseline(self.start_score)

    def offer(self, score: float, step: int) -> bool:
        """Keep the attached adapter if ``score`` beats the best; returns whether it did."""
        if self.score is not None and score <= self.score:
            self.stale += 1
            return False
        self.score, self.stale = score, 0
        metrics = {"val_box_iou": score, "step": step}
        if self.start_score is not None:
            metrics["start_box_iou"] = self.start_score
        if self.decoder is not None:
            metrics["decoder_step"] = step
        decoder = decoder_state(self.decoder) if self.decoder is not None else None
        self.adapter = Adapter.from_attached(
            self.handle,
            self.model,
            parent_adapter=self.parent,
            training_snapshot=self.snapshot,
            metrics=metrics,
            decoder=decoder,
        )
        if self.hooks.on_best is not None and self.report:
            self.hooks.on_best(self.adapter)
        return True

    def last_decoder(self, step: int) -> None:
        """Give the best adapter the last step's decoder (written again, as a new best).

        The validation score measures prompted masks only; the decoder learns its own targets all run
        long, so the adapter of an early best step would otherwise leave with a half-trained decoder
        (the headless demo's second round: AIS mSA 0.02 from step 12's decoder).
        """
        if self.decoder is None or self.adapter is None or self.adapter.metrics.get("decoder_step") == step:
            return
        self.adapter.decoder = decoder_state(self.decoder)
        self.adapter.metrics["decoder_step"] = step
        if self.hooks.on_best is not None and self.report:
            self.hooks.on_best(self.adapter)


class _Stepper:
    """One optimisation step: the loss in the training precision, its backward pass outside autocast
    (float16 losses scaled so small gradients do not underflow), then the optimizer step.

    In one process each decoder pass is backpropagated as soon as it is computed (the peak holds one
    pass's graph); DistributedDataParallel expects one backward pass per forward, so it gets the sum.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, precision: Precision, world: int) -> None:
        self.optimizer, self.precision = optimizer, precision
        self.scaler = torch.amp.GradScaler(precision.device_type) if precision.needs_grad_scaler else None
        self.per_pass: Backward | None = self.backward if world == 1 else None

    def backward(self, tensor: torch.Tensor, grad: torch.Tensor | None) -> None:
        """Backpropagate a loss (``grad`` None) or a tensor with the gradient it received."""
        with torch.autocast(self.precision.device_type, enabled=False):
            if grad is None and self.scaler is not None:
                tensor = self.scaler.scale(tensor)
            tensor.backward(grad)

    def step(self, module: nn.Module, index: int, labels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Train on ``labels`` of training image ``index``; returns the step's loss."""
        self.optimizer.zero_grad()
        with self.precision.autocast():
            loss = module(index, labels, rng, self.per_pass)
        if self.per_pass is None:
            self.backward(loss, None)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return loss


def _annotated(samples: Sequence[Sample]) -> list[Sample]:
    return [s for s in samples if np.any(s[1])]


def _instance_objective(
    sam: Sam, config: TrainingConfig, train_samples: Sequence[Sample], state: dict[str, torch.Tensor] | None = None
) -> InstanceObjective | None:
    """The instance decoder to train with the adapter (``with_decoder``; from ``state`` when one is given),
    with its targets, or None."""
    if not config.with_decoder:
        return None
    decoder = build_decoder(sam, state or None)
    return InstanceObjective(sam, decoder, [labels for _, labels in train_samples])


def step_use(spec: PeftSpec) -> str:
    """Which of the precision probe's figures a training step of ``spec`` is made of: the decoder pass
    alone where the whole encoder stays frozen, else an encoder block and the decoder pass."""
    return "decoder" if not spec.blocks and not spec.options.quantizes_encoder else "train"


def training_precisions(model: LoadedModel, spec: PeftSpec, requested: str) -> tuple[Precision, Precision]:
    """The steps' precision and that of the frozen stages, which run once per image as the annotator's
    embeddings do (so a frozen encoder shares its cache entries); one probe decides both."""
    probe = model_probe(model.sam)
    return (
        resolve_precision(requested, model.device, probe, use=step_use(spec)),
        resolve_precision(requested, model.device, probe, use="embed"),
    )


def _stage_inputs(
    sam: Sam,
    stage: int,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    source: EmbeddingSource | None,
    frozen: Precision,
    steps: Precision,
) -> tuple[StageInputs, StageInputs]:
    """The kept stage inputs of the training and validation images (the training ones without validation
    images), computed in ``frozen``; in bfloat16 they take half the memory, in float32 if ``steps`` are."""
    as_float32 = frozen.name != steps.name
    with frozen.autocast():
        inputs = StageInputs(sam, [image for image, _ in train_samples], stage, source, as_float32)
        if not val_samples:
            return inputs, inputs
        return inputs, StageInputs(sam, [image for image, _ in val_samples], stage, source, as_float32)


def _step_module(
    sam: Sam, inputs: StageInputs, config: TrainingConfig, world: int, instance: InstanceObjective | None
) -> nn.Module:
    """The loss as a module, wrapped in DistributedDataParallel under several ranks."""
    module: nn.Module = _Objective(sam, inputs, config, instance)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [sam.device.index] if sam.device.type == "cuda" else None
        module = DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)
    return module


def train(
    model: LoadedModel,
    spec: PeftSpec,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample] = (),
    config: TrainingConfig | None = None,
    hooks: TrainingHooks | None = None,
    *,
    embedding_source: EmbeddingSource | None = None,
    training_snapshot: str = "",
    parent: Adapter | None = None,
    sample_weights: np.ndarray | None = None,
) -> Adapter:
    """Train ``spec`` on ``model`` and return the best adapter (the model is left detached).

    Parameters
    ----------
    model, spec
        The base model and the PEFT method with its placement.
    train_samples, val_samples
        (image, instance labels) pairs; without validation samples, early stopping watches the
        training images.
    config, hooks
        Hyperparameters (:class:`TrainingConfig`) and the caller's hooks (:class:`TrainingHooks`).
    embedding_source
        Where whole-image embeddings can come from and go to when the whole encoder is frozen
        (the annotator's cache).
    training_snapshot
        The store snapshot id the adapter records.
    parent
        An adapter of the same spec to start from (its tensors and instance decoder) instead of the base
        model; the new adapters name it as their parent.
    sample_weights
        The probability of drawing each training sample at a step (None: all equal); see ``.continuation``.

    Raises
    ------
    SamPeftError
        Without training objects.
    """
    config, hooks = config or TrainingConfig(), hooks or TrainingHooks()
    train_samples, val_samples = _annotated(train_samples), _annotated(val_samples)
    if not train_samples:
        raise SamPeftError(f"{NO_TRAINING_OBJECTS}.")
    precision, frozen_precision = training_precisions(model, spec, config.precision)
    rank, world = distributed_rank()
    rng = np.random.default_rng(config.seed + rank)
    torch.manual_seed(config.seed)
    sam = model.sam
    handle = attach(sam, spec, parent.tensors if parent is not None else None)
    was_training = sam.training
    try:
        sam.eval()
        stage = frozen_prefix_stages(sam)
        inputs, val_inputs = _stage_inputs(
            sam, stage, train_samples, val_samples, embedding_source, frozen_precision, precision
        )
        if not val_samples:
            val_samples = train_samples
        if hooks.on_prepared is not None:
            hooks.on_prepared(inputs)
        instance = _instance_objective(sam, config, train_samples, parent.decoder if parent is not None else None)
        decoder = instance.decoder if instance is not None else None
        best = _BestAdapter(handle, model, training_snapshot, rank == 0, hooks, decoder)
        best.parent = parent.identity if parent is not None else ""
        best.measure_start(lambda: validation_score(sam, val_samples, inputs=val_inputs), precision)
        step_module = _step_module(sam, inputs, config, world, instance)
        groups = [{"params": list(handle.trainable_parameters()), "lr": config.lr}]
        if instance is not None:  # a decoder trained from scratch needs a larger rate than the adapter
            groups.append({"params": list(instance.decoder.parameters()), "lr": DECODER_LR})
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
        schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.9, patience=10)
        stepper = _Stepper(optimizer, precision, world)
        start = time.perf_counter()
        for step in range(1, config.steps + 1):
            step_module.train()  # the model and the instance decoder
            index = int(
                rng.choice(len(train_samples), p=sample_weights)
                if sample_weights is not None
                else rng.integers(len(train_samples))
            )
            loss = stepper.step(step_module, index, train_samples[index][1], rng)
            elapsed = time.perf_counter() - start
            rate = step / elapsed if elapsed > 0 else 0.0
            val, improved = None, False
            stop = any_rank(hooks.should_stop is not None and hooks.should_stop(), world)
            last = stop or step == config.steps
            # a stop ends the run now: it validates only to have an adapter at all
            if (step % config.validate_every == 0 or last) and not (stop and best.adapter is not None):
                step_module.eval()
                with precision.autocast():
                    val = validation_score(sam, val_samples, inputs=val_inputs)
                schedule.step(val)
                improved = best.offer(val, step)
            if hooks.on_event is not None and rank == 0:
                eta = (config.steps - step) / rate if rate > 0 else math.inf
                loss_value = float(loss.detach())
                hooks.on_event(TrainingEvent(step, config.steps, loss_value, val, best.score, rate, eta, improved))
            if last or best.stale >= config.patience:
                break
        best.last_decoder(step)
        assert best.adapter is not None
        return best.adapter
    finally:
        handle.detach()
        sam.train(was_training)
