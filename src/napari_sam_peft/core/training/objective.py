"""The paper's training objective: prompts sampled from the true objects, masks decoded, Dice + BCE + IoU losses.

Each object starts from its box (single-mask output) and from one positive point (multi-mask output,
the best of three counts, as in SAM); then ``sub_iterations`` corrections add one positive point in
the missed region and one negative point in the spurious region. Half the objects continue their
corrections from the box start (the box kept as a prompt), half from the point start, as micro_sam's
trainer alternates its starts: a model that never sees a box with correction points
gets worse when a user adds points to a box (LiteMedSAM's held-out I_B fell from 0.36 to 0.09 after
30 steps whose corrections all followed the point start).

Losses are computed at the mask decoder's own resolution (1/4 of SAM's input: upsampling every
pass first would cost 16 times the pixels for the same gradients on the adapter).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

from ..annotation.stage_inputs import StageInputs
from ..sam.preprocessing import embedding_side, input_size, model_input

Sample = tuple[np.ndarray, np.ndarray]  # image, instance labels


def _scale(sam: Sam, image_shape: tuple[int, ...]) -> float:
    return input_size(sam) / max(image_shape[:2])


def low_res_stride(sam: Sam) -> int:
    """Input pixels per pixel of the mask decoder's output (4 for SAM: 1024 -> 256; 2 for the demo)."""
    return input_size(sam) // (4 * embedding_side(sam))


def object_prompts(
    labels: np.ndarray,
    rng: np.random.Generator,
    n: int,
    scale: float,
    device: torch.device | str,
    stride: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


def decode(
    sam: Sam,
    embeddings: torch.Tensor,
    size: tuple[int, ...],
    boxes: torch.Tensor | None = None,
    points: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    multimask: bool = False,
    full_resolution: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask logits cropped to ``size``: upsampled to the input frame, or at the decoder's 1/4 resolution."""
    point_prompts = None
    if points is not None:
        labels = torch.ones(points.shape[:2], device=points.device) if labels is None else labels
        point_prompts = (points, labels)
    sparse, dense = sam.prompt_encoder(points=point_prompts, boxes=boxes, masks=None)
    logits, iou = sam.mask_decoder(
        image_embeddings=embeddings,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )
    if full_resolution:
        full = input_size(sam)
        logits = F.interpolate(logits, size=(full, full), mode="bilinear", align_corners=False)
    return logits[..., : size[0], : size[1]], iou


def mask_losses(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output Dice + BCE (objects x outputs) and the true IoU of each output (in float32, whatever
    precision the logits come in: sums over thousands of pixels lose too much in bfloat16)."""
    logits = logits.float()
    prob = torch.sigmoid(logits)
    target = target.expand_as(prob)
    inter = (prob * target).sum((-1, -2))
    dice = 1 - (2 * inter + 1) / (prob.sum((-1, -2)) + target.sum((-1, -2)) + 1)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean((-1, -2))
    hard, truth = (logits > 0).float(), (target > 0.5).float()
    true_iou = (hard * truth).sum((-1, -2)) / ((hard + truth).clamp(max=1).sum((-1, -2)) + 1e-6)
    return dice + bce, true_iou


def correction_points(
    prediction: torch.Tensor, target: torch.Tensor, rng: np.random.Generator, stride: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """One positive point in each object's missed region and one negative in its spurious region.

    Labels are -1 where there is no such region (SAM ignores those points). ``stride`` maps
    low-resolution masks back to the input frame (pixel centres).
    """
    pred = prediction.detach().float().cpu().numpy()[:, 0] > 0
    gt = target.detach().float().cpu().numpy()[:, 0] > 0.5
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


#: backpropagates a loss (``grad`` None) or a tensor with the gradient it received (``grad``)
Backward = Callable[[torch.Tensor, torch.Tensor | None], None]


class LossSink:
    """Where each decoder pass's loss goes: summed for one backward pass at the end (``backward`` None),
    or backpropagated at once, so only one pass's graph is held at a time.

    In the second mode the decoder passes run on a detached copy of the embeddings that collects their
    gradient; :meth:`finish` sends it back through the adapted encoder stages once.
    """

    def __init__(self, embeddings: torch.Tensor, backward: Backward | None = None) -> None:
        self.backward = backward
        self.source = embeddings if backward is not None and embeddings.requires_grad else None
        self.embeddings = embeddings.detach().requires_grad_() if self.source is not None else embeddings
        self.total = torch.zeros((), device=embeddings.device)

    def add(self, term: torch.Tensor) -> None:
        """Add one pass's (weighted) loss."""
        if self.backward is None:
            self.total = self.total + term
            return
        self.backward(term, None)
        self.total = self.total + term.detach()

    def finish(self) -> torch.Tensor:
        """The step's loss (detached once backpropagated), after the encoder's share of the backward pass."""
        if self.backward is not None and self.source is not None and self.embeddings.grad is not None:
            self.backward(self.source, self.embeddings.grad)
        return self.total


def start_losses(
    sam: Sam,
    embeddings: torch.Tensor,
    target: torch.Tensor,
    boxes: torch.Tensor,
    points: torch.Tensor,
    sink: LossSink,
    full_resolution: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add the loss of the first prompts (box, and one point with the best of three masks) to ``sink``,
    each as soon as it is computed; return the box start's mask and the point start's best mask, from
    which correction sub-iterations go on."""
    size = target.shape[-2:]
    box_logits, box_iou = decode(sam, embeddings, size, boxes=boxes, full_resolution=full_resolution)
    box_loss, box_true = mask_losses(box_logits, target)
    sink.add(box_loss.mean() + F.mse_loss(box_iou, box_true.detach()))
    point_logits, point_iou = decode(
        sam, embeddings, size, points=points, multimask=True, full_resolution=full_resolution
    )
    point_loss, point_true = mask_losses(point_logits, target)
    sink.add(point_loss.min(dim=1).values.mean() + F.mse_loss(point_iou, point_true.detach()))
    best = point_loss.argmin(dim=1)
    return box_logits.detach(), point_logits[torch.arange(len(best)), best][:, None].detach()


def objective(
    sam: Sam,
    embeddings: torch.Tensor,
    labels: np.ndarray,
    rng: np.random.Generator,
    objects_per_image: int,
    sub_iterations: int,
    backward: Backward | None = None,
    instance_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The paper's loss for one image's embeddings: box and point starts, then correction sub-iterations.

    Half the objects continue their corrections from the box start (the box kept as a prompt), the
    others from the point start (a single object: either, at random), so every step trains both.

    With ``backward`` (called with each decoder pass's loss), every pass is backpropagated as soon
    as it is computed and the returned loss is detached: the gradients are the same, and the peak
    memory holds one pass's graph instead of all of them (2 starts + 2 x ``sub_iterations``).

    ``instance_loss`` (joint training) adds the instance decoder's loss on the same embeddings, so
    the adapted encoder blocks learn from both, as in micro_sam's ``JointSamTrainer``.
    """
    scale = _scale(sam, labels.shape)
    stride = low_res_stride(sam)
    target, boxes, points = object_prompts(labels, rng, objects_per_image, scale, embeddings.device, stride)
    size = target.shape[-2:]
    sink = LossSink(embeddings, backward)
    embeddings = sink.embeddings
    if instance_loss is not None:
        sink.add(instance_loss(embeddings))
    box_current, point_current = start_losses(sam, embeddings, target, boxes, points, sink, full_resolution=False)
    if sub_iterations == 0:
        return sink.finish()
    n = len(target)
    split = n // 2 if n > 1 else int(rng.random() < 0.5)  # objects [:split] follow their box
    chains = [
        (slice(0, split), box_current[:split], boxes[:split], points[:split, :0]),
        (slice(split, n), point_current[split:], None, points[split:]),
    ]
    for part, current, kept_boxes, prompts in chains:
        if part.stop == part.start:
            continue
        part_target = target[part]
        share = len(part_target) / n  # each chain's mean weighted by its objects: the mean over all
        prompt_labels = torch.ones(prompts.shape[:2], device=points.device)
        for _ in range(sub_iterations):
            new_points, new_labels = correction_points(current, part_target, rng, stride)
            prompts = torch.cat([prompts, new_points], 1)
            prompt_labels = torch.cat([prompt_labels, new_labels], 1)
            logits, iou = decode(
                sam,
                embeddings,
                size,
                boxes=kept_boxes,
                points=prompts,
                labels=prompt_labels,
                full_resolution=False,
            )
            corrected, true = mask_losses(logits, part_target)
            sink.add(share * (corrected.mean() + F.mse_loss(iou, true.detach())) / sub_iterations)
            current = logits.detach()
    return sink.finish()


VALIDATION_BATCH = 16


@torch.no_grad()
def validation_score(
    sam: Sam, samples: Sequence[Sample], max_objects: int = 64, inputs: StageInputs | None = None
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
