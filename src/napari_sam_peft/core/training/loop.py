"""Training a PEFT adapter with the paper's objective, from (image, labels) samples.

Each step takes one training image and up to ``objects_per_image`` objects. Every object
starts from its box (single-mask output) or from one positive point (multi-mask output,
the best of three counts, as in SAM); then ``sub_iterations`` corrections add one positive
point in the missed region and one negative point in the spurious region. The loss is
Dice + BCE on the masks plus MSE between predicted and true IoU, computed at the mask
decoder's own resolution (1/4 of SAM's input: upsampling every pass first would cost 16
times the pixels for the same gradients on the adapter). AdamW, a plateau schedule
(factor 0.9, patience 10) and early stopping on the validation score (mean IoU of box
prompts on the validation objects).

Frozen leading encoder stages run once per image (see ``encoder_split``): each step runs
only the adapted blocks, the neck and the decoder. With the whole encoder frozen
(``freeze_encoder``, ``decoder_lora``) training runs from image embeddings alone, and an
``EmbeddingSource`` lets it reuse (and fill) the annotator's embedding cache.

Under ``torch.distributed`` (``torchrun``), each rank trains on its own stream of images and
the trainable modules are wrapped in DistributedDataParallel; rank 0 reports and writes.

This module runs in whatever process calls it; the training job wraps it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SamPeftError
from ..peft import Adapter, PeftSpec, attach
from ..sam.loading import LoadedModel
from ..sam.stages import frozen_prefix_stages, run_stages

Sample = tuple[np.ndarray, np.ndarray]  # image, instance labels


class EmbeddingSource(Protocol):
    """Where whole-image embeddings of frozen-encoder training can come from and go to."""

    def get(self, image: np.ndarray) -> torch.Tensor | None: ...

    def put(self, image: np.ndarray, features: torch.Tensor) -> None: ...


@dataclass
class TrainingConfig:
    steps: int = 200
    lr: float = 1e-5
    objects_per_image: int = 8
    sub_iterations: int = 8
    validate_every: int = 25
    patience: int = 10  # validations without improvement before stopping early
    seed: int = 0


@dataclass(frozen=True)
class TrainingEvent:
    """Structured progress, reported after every step and validation."""

    step: int
    steps: int
    loss: float
    val_score: float | None
    best_score: float | None
    its_per_second: float
    eta_seconds: float
    improved: bool = False


def model_input(sam, image: np.ndarray) -> torch.Tensor:
    """An image, greyscale (H, W) or RGB (H, W, 3), as SAM's normalised, resized, padded input tensor.

    The same preprocessing as the annotator's embeddings (micro_sam's ``_to_image``, then what
    ``SamPredictor.set_image`` does), so training sees what annotating saw.
    """
    from micro_sam.util import _to_image
    from segment_anything.utils.transforms import ResizeLongestSide

    rgb = ResizeLongestSide(sam.image_encoder.img_size).apply_image(_to_image(image))
    tensor = torch.as_tensor(rgb, device=sam.device).permute(2, 0, 1)[None].float()
    return sam.preprocess(tensor)


def _scale(sam, image_shape) -> float:
    return sam.image_encoder.img_size / max(image_shape[:2])


def low_res_stride(sam) -> int:
    """Input pixels per pixel of the mask decoder's output (4 for SAM: 1024 -> 256; 2 for the demo)."""
    encoder = sam.image_encoder
    embedding_side = encoder.img_size // encoder.patch_embed.proj.kernel_size[0]
    return encoder.img_size // (4 * embedding_side)


def object_prompts(labels: np.ndarray, rng: np.random.Generator, n: int, scale: float, device, stride: int = 1):
    """Masks (objects x 1 x H x W), boxes (x0 y0 x1 y1) and one point each, in the model's input frame.

    With ``stride`` > 1 (see :func:`low_res_stride`) the masks are at the decoder's own (low)
    resolution, as soft area averages.
    """
    ids = rng.permutation([i for i in np.unique(labels) if i != 0])[:n]
    size = (round(labels.shape[0] * scale), round(labels.shape[1] * scale))
    masks, boxes, points = [], [], []
    for obj in ids:
        mask = labels == obj
        rows, cols = np.nonzero(mask)
        masks.append(mask)
        boxes.append([cols.min(), rows.min(), cols.max(), rows.max()])
        pick = rng.integers(len(rows))
        points.append([[cols[pick], rows[pick]]])
    target = torch.from_numpy(np.stack(masks)).float()[:, None]
    if stride == 1:
        target = F.interpolate(target, size=size, mode="nearest").to(device)
    else:
        low = (math.ceil(size[0] / stride), math.ceil(size[1] / stride))
        target = F.interpolate(target, size=low, mode="area").to(device)
    return (
        target,
        torch.tensor(boxes, dtype=torch.float32, device=device) * scale,
        torch.tensor(points, dtype=torch.float32, device=device) * scale,
    )


def decode(sam, embeddings, size, boxes=None, points=None, labels=None, multimask=False, full_resolution=True):
    """Mask logits cropped to ``size``: upsampled to the input frame, or at the decoder's 1/4 resolution."""
    if points is not None:
        labels = torch.ones(points.shape[:2], device=points.device) if labels is None else labels
        sparse, dense = sam.prompt_encoder(points=(points, labels), boxes=None, masks=None)
    else:
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
    logits, iou = sam.mask_decoder(
        image_embeddings=embeddings,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )
    if full_resolution:
        full = sam.image_encoder.img_size
        logits = F.interpolate(logits, size=(full, full), mode="bilinear", align_corners=False)
    return logits[..., : size[0], : size[1]], iou


def mask_losses(logits, target):
    """Per-output Dice + BCE (objects x outputs) and the true IoU of each output."""
    prob = torch.sigmoid(logits)
    target = target.expand_as(prob)
    inter = (prob * target).sum((-1, -2))
    dice = 1 - (2 * inter + 1) / (prob.sum((-1, -2)) + target.sum((-1, -2)) + 1)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean((-1, -2))
    hard, truth = (logits > 0).float(), (target > 0.5).float()
    true_iou = (hard * truth).sum((-1, -2)) / ((hard + truth).clamp(max=1).sum((-1, -2)) + 1e-6)
    return dice + bce, true_iou


def correction_points(prediction, target, rng, stride: int = 1):
    """One positive point in each object's missed region and one negative in its spurious region.

    Labels are -1 where there is no such region (SAM ignores those points). ``stride`` maps
    low-resolution masks back to the input frame (pixel centres).
    """
    pred = prediction.detach().cpu().numpy()[:, 0] > 0
    gt = target.detach().cpu().numpy()[:, 0] > 0.5
    points = np.zeros((len(gt), 2, 2), dtype=np.float32)
    labels = -np.ones((len(gt), 2), dtype=np.float32)
    for i in range(len(gt)):
        for slot, (region, label) in enumerate(((gt[i] & ~pred[i], 1), (pred[i] & ~gt[i], 0))):
            rows, cols = np.nonzero(region)
            if len(rows):
                pick = rng.integers(len(rows))
                points[i, slot] = (cols[pick] * stride + (stride - 1) / 2, rows[pick] * stride + (stride - 1) / 2)
                labels[i, slot] = label
    device = prediction.device
    return torch.from_numpy(points).to(device), torch.from_numpy(labels).to(device)


class StageInputs:
    """Each image's block-k input, computed once with the frozen leading stages.

    ``features(i)`` runs the remaining stages (with gradients where they train). With the
    whole encoder frozen, the kept input is the embedding itself, and ``source`` can supply
    it from (and add it to) the annotator's cache.
    """

    def __init__(self, sam, images: Sequence[np.ndarray], stage: int, source: EmbeddingSource | None = None):
        self.sam = sam
        self.stage = stage
        self.whole_encoder_frozen = stage == len(sam.image_encoder.blocks) + 2
        self.computed = 0
        self.reused = 0
        self.inputs: list[torch.Tensor] = []
        with torch.no_grad():
            for image in images:
                kept = source.get(image) if source is not None and self.whole_encoder_frozen else None
                if kept is None:
                    kept = run_stages(sam.image_encoder, model_input(sam, image), 0, stage)
                    self.computed += 1
                    if source is not None and self.whole_encoder_frozen:
                        source.put(image, kept)
                else:
                    self.reused += 1
                self.inputs.append(kept.to(sam.device))

    def __len__(self) -> int:
        return len(self.inputs)

    def features(self, index: int) -> torch.Tensor:
        if self.whole_encoder_frozen:
            return self.inputs[index]
        return run_stages(self.sam.image_encoder, self.inputs[index], self.stage)


def start_losses(sam, embeddings, target, boxes, points, full_resolution: bool = True):
    """The loss of the first prompts (box, and one point with the best of three masks) and the
    point start's best mask, from which the correction sub-iterations go on."""
    size = target.shape[-2:]
    box_logits, box_iou = decode(sam, embeddings, size, boxes=boxes, full_resolution=full_resolution)
    box_loss, box_true = mask_losses(box_logits, target)
    point_logits, point_iou = decode(
        sam, embeddings, size, points=points, multimask=True, full_resolution=full_resolution
    )
    point_loss, point_true = mask_losses(point_logits, target)
    loss = (
        box_loss.mean()
        + point_loss.min(dim=1).values.mean()
        + F.mse_loss(box_iou, box_true.detach())
        + F.mse_loss(point_iou, point_true.detach())
    )
    best = point_loss.argmin(dim=1)
    return loss, point_logits[torch.arange(len(best)), best][:, None]


def objective(sam, embeddings, labels, rng, objects_per_image: int, sub_iterations: int) -> torch.Tensor:
    """The paper's loss for one image's embeddings: box and point starts, then correction sub-iterations."""
    scale = _scale(sam, labels.shape)
    stride = low_res_stride(sam)
    target, boxes, points = object_prompts(labels, rng, objects_per_image, scale, embeddings.device, stride)
    size = target.shape[-2:]
    loss, current = start_losses(sam, embeddings, target, boxes, points, full_resolution=False)
    prompts, prompt_labels = points, torch.ones(points.shape[:2], device=points.device)
    for _ in range(sub_iterations):
        new_points, new_labels = correction_points(current, target, rng, stride)
        prompts = torch.cat([prompts, new_points], 1)
        prompt_labels = torch.cat([prompt_labels, new_labels], 1)
        logits, iou = decode(sam, embeddings, size, points=prompts, labels=prompt_labels, full_resolution=False)
        corrected, true = mask_losses(logits, target)
        loss = loss + (corrected.mean() + F.mse_loss(iou, true.detach())) / max(sub_iterations, 1)
        current = logits
    return loss


VALIDATION_BATCH = 16


@torch.no_grad()
def validation_score(
    sam, samples: Sequence[Sample], max_objects: int = 64, inputs: StageInputs | None = None
) -> float:
    """Mean IoU of box prompts over the validation objects, at the decoder's resolution (fast; the full
    mSA is in evaluation.py)."""
    rng = np.random.default_rng(0)
    scores = []
    for index, (image, labels) in enumerate(samples):
        scale = _scale(sam, labels.shape)
        if inputs is not None:
            embeddings = inputs.features(index)
        else:
            embeddings = sam.image_encoder(model_input(sam, image))
        target, boxes, _ = object_prompts(labels, rng, max_objects, scale, embeddings.device, low_res_stride(sam))
        for start in range(0, len(boxes), VALIDATION_BATCH):  # bounded memory with many objects
            chunk = slice(start, start + VALIDATION_BATCH)
            logits, _ = decode(sam, embeddings, target.shape[-2:], boxes=boxes[chunk], full_resolution=False)
            scores.append(mask_losses(logits, target[chunk])[1][:, 0])
    return float(torch.cat(scores).mean()) if scores else float("nan")


class _Objective(nn.Module):
    """The trainable model with the loss as its forward, so DistributedDataParallel can wrap it."""

    def __init__(self, sam, inputs: StageInputs, config: TrainingConfig) -> None:
        super().__init__()
        self.sam = sam
        self.inputs = inputs
        self.config = config

    def forward(self, index: int, labels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        embeddings = self.inputs.features(index)
        return objective(
            self.sam, embeddings, labels, rng, self.config.objects_per_image, self.config.sub_iterations
        )


def _distributed() -> tuple[int, int]:
    """(rank, world size) under torch.distributed, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(
    model: LoadedModel,
    spec: PeftSpec,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample] = (),
    config: TrainingConfig | None = None,
    on_event: Callable[[TrainingEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_best: Callable[[Adapter], None] | None = None,
    training_snapshot: str = "",
    embedding_source: EmbeddingSource | None = None,
    on_prepared: Callable[[StageInputs], None] | None = None,
) -> Adapter:
    """Train ``spec`` on ``model`` and return the best adapter (the model is left detached).

    ``on_best`` receives each new best adapter (write it, attach it live); ``should_stop`` is
    polled every step and ends training with the best adapter so far. ``on_prepared`` is
    called once the frozen stages have run on every image (before the first step).

    Raises
    ------
    SamPeftError
        Without training objects.
    """
    config = config or TrainingConfig()
    train_samples = [s for s in train_samples if np.any(s[1])]
    if not train_samples:
        raise SamPeftError("There are no annotated training images: commit some objects first.")
    val_samples = [s for s in val_samples if np.any(s[1])]
    rank, world = _distributed()
    rng = np.random.default_rng(config.seed + rank)
    torch.manual_seed(config.seed)
    sam = model.sam
    handle = attach(sam, spec)
    was_training = sam.training
    try:
        sam.eval()
        stage = frozen_prefix_stages(sam)
        inputs = StageInputs(sam, [image for image, _ in train_samples], stage, embedding_source)
        if val_samples:
            val_inputs = StageInputs(sam, [image for image, _ in val_samples], stage, embedding_source)
        else:  # no validation images: early stopping watches the training images
            val_samples, val_inputs = train_samples, inputs
        if on_prepared is not None:
            on_prepared(inputs)
        step_module: nn.Module = _Objective(sam, inputs, config)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [sam.device.index] if sam.device.type == "cuda" else None
            step_module = DistributedDataParallel(step_module, device_ids=device_ids, find_unused_parameters=True)
        optimizer = torch.optim.AdamW(handle.trainable_parameters(), lr=config.lr)
        schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.9, patience=10)
        best: Adapter | None = None
        best_score: float | None = None
        stale = 0
        start = time.perf_counter()
        for step in range(1, config.steps + 1):
            sam.train()
            index = int(rng.integers(len(train_samples)))
            loss = step_module(index, train_samples[index][1], rng)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            elapsed = time.perf_counter() - start
            rate = step / elapsed if elapsed > 0 else 0.0
            val, improved = None, False
            last = step == config.steps or (should_stop is not None and should_stop())
            last = _agree(last, world)
            if step % config.validate_every == 0 or last:
                sam.eval()
                val = validation_score(sam, val_samples, inputs=val_inputs)
                schedule.step(val)
                if best_score is None or val > best_score:
                    best_score, stale, improved = val, 0, True
                    best = Adapter.from_attached(
                        handle,
                        model,
                        training_snapshot=training_snapshot,
                        metrics={"val_box_iou": val, "step": step},
                    )
                    if on_best is not None and rank == 0:
                        on_best(best)
                else:
                    stale += 1
            if on_event is not None and rank == 0:
                eta = (config.steps - step) / rate if rate > 0 else math.inf
                on_event(
                    TrainingEvent(step, config.steps, float(loss.detach()), val, best_score, rate, eta, improved)
                )
            if last or stale >= config.patience:
                break
        assert best is not None
        return best
    finally:
        handle.detach()
        sam.train(was_training)


def _agree(flag: bool, world: int) -> bool:
    """Under several ranks, stop when any rank wants to (all must run the same number of steps)."""
    if world == 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value)
    return bool(value.item() > 0)
