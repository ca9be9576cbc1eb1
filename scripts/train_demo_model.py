"""Train the bundled demo model on generated domain-A images (bright round nuclei).

The demo model is SAM's architecture at a small size (``core.architecture.DEMO``). This
script trains it from a fixed seed on freshly generated nuclei images, with SAM's two
prompt types: the box of an object (single-mask output) and one positive point inside it
(multi-mask output, the best of three counts, as in SAM), followed by two correction
sub-iterations (one positive point in the missed region, one negative in the spurious
region, as in the paper's training protocol). The loss is Dice + BCE on the
masks plus MSE between predicted and true IoU. It ends by reporting the mean IoU of box
and point prompts on held-out images, and writes
``src/napari_sam_peft/data/demo_sam.safetensors``.

    python scripts/train_demo_model.py --steps 1500 --seed 0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_sam_peft.core.architecture import DEMO, build_sam
from napari_sam_peft.core.models import model_identity, save_model
from napari_sam_peft.core.sample_data import make_sample

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "napari_sam_peft" / "data" / "demo_sam.safetensors"
MAX_OBJECTS = 8
TRAIN_SEEDS = 100_000  # training images use seeds >= this; held-out ones use 0..99


def to_input(sam, image: np.ndarray) -> torch.Tensor:
    """The image as SAM's normalised input (what SamPredictor does for a 256 x 256 image)."""
    from micro_sam.util import _to_image

    rgb = torch.from_numpy(_to_image(image)).permute(2, 0, 1)[None].float()
    return sam.preprocess(rgb)


def object_prompts(labels: np.ndarray, rng: np.random.Generator, n: int):
    ids = rng.permutation(np.unique(labels)[1:])[:n]
    masks, boxes, points = [], [], []
    for obj in ids:
        mask = labels == obj
        rows, cols = np.nonzero(mask)
        masks.append(mask)
        boxes.append([cols.min(), rows.min(), cols.max(), rows.max()])  # SAM: x0, y0, x1, y1
        pick = rng.integers(len(rows))
        points.append([[cols[pick], rows[pick]]])
    return (
        torch.from_numpy(np.stack(masks)).float()[:, None],
        torch.tensor(boxes, dtype=torch.float32),
        torch.tensor(points, dtype=torch.float32),
    )


def decode(sam, embeddings, boxes=None, points=None, multimask=False, point_labels=None):
    if points is not None:
        labels = torch.ones(points.shape[:2]) if point_labels is None else point_labels
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
    return F.interpolate(logits, size=(DEMO.img_size, DEMO.img_size), mode="bilinear", align_corners=False), iou


def mask_losses(logits, iou_pred, target):
    """Per-output Dice + BCE (shape objects x outputs) and the true IoU of each output."""
    prob = torch.sigmoid(logits)
    target = target.expand_as(prob)
    inter = (prob * target).sum((-1, -2))
    dice = 1 - (2 * inter + 1) / (prob.sum((-1, -2)) + target.sum((-1, -2)) + 1)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean((-1, -2))
    hard = (logits > 0).float()
    true_iou = (hard * target).sum((-1, -2)) / ((hard + target).clamp(max=1).sum((-1, -2)) + 1e-6)
    return dice + bce, true_iou


def correction_points(prediction: torch.Tensor, target: torch.Tensor, rng) -> tuple[torch.Tensor, torch.Tensor]:
    """One positive point in each object's missed region, one negative in its spurious region.

    Returns points (objects x 2 x 2, SAM's x, y) and labels (1, 0; -1 where there is no error:
    SAM ignores such points).
    """
    pred = prediction.detach().numpy()[:, 0] > 0
    gt = target.numpy()[:, 0] > 0.5
    points = np.zeros((len(gt), 2, 2), dtype=np.float32)
    labels = -np.ones((len(gt), 2), dtype=np.float32)
    for i in range(len(gt)):
        for slot, (region, label) in enumerate(((gt[i] & ~pred[i], 1), (pred[i] & ~gt[i], 0))):
            rows, cols = np.nonzero(region)
            if len(rows):
                pick = rng.integers(len(rows))
                points[i, slot] = (cols[pick], rows[pick])
                labels[i, slot] = label
    return torch.from_numpy(points), torch.from_numpy(labels)


def train_step(sam, optimizer, rng, corrections: int = 2) -> float:
    sample = make_sample("nuclei", seed=TRAIN_SEEDS + int(rng.integers(1_000_000)))
    embeddings = sam.image_encoder(to_input(sam, sample.image))
    target, boxes, points = object_prompts(sample.labels, rng, MAX_OBJECTS)
    box_logits, box_iou = decode(sam, embeddings, boxes=boxes)
    box_loss, box_true = mask_losses(box_logits, box_iou, target)
    point_logits, point_iou = decode(sam, embeddings, points=points, multimask=True)
    point_loss, point_true = mask_losses(point_logits, point_iou, target)
    loss = (
        box_loss.mean()
        + point_loss.min(dim=1).values.mean()
        + F.mse_loss(box_iou, box_true.detach())
        + F.mse_loss(point_iou, point_true.detach())
    )
    # The paper's correction sub-iterations: add a positive point in the missed region and a
    # negative one in the spurious region, and predict again (single-mask output).
    best = point_loss.argmin(dim=1)
    current = point_logits[torch.arange(len(best)), best][:, None]
    prompts, labels = points, torch.ones(points.shape[:2])
    for _ in range(corrections):
        new_points, new_labels = correction_points(current, target, rng)
        prompts, labels = torch.cat([prompts, new_points], 1), torch.cat([labels, new_labels], 1)
        logits, iou = decode(sam, embeddings, points=prompts, point_labels=labels)
        corrected_loss, corrected_true = mask_losses(logits, iou, target)
        loss = loss + corrected_loss.mean() + F.mse_loss(iou, corrected_true.detach())
        current = logits
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate(sam, n_images: int = 10) -> dict[str, float]:
    """Mean IoU of box prompts and of single positive points (best of three) on held-out images."""
    rng = np.random.default_rng(12345)
    box_ious, point_ious = [], []
    for seed in range(n_images):
        sample = make_sample("nuclei", seed=seed)
        embeddings = sam.image_encoder(to_input(sam, sample.image))
        target, boxes, points = object_prompts(sample.labels, rng, 64)
        logits, _ = decode(sam, embeddings, boxes=boxes)
        _, iou = mask_losses(logits, None, target)
        box_ious.append(iou[:, 0])
        logits, scores = decode(sam, embeddings, points=points, multimask=True)
        _, iou = mask_losses(logits, None, target)
        point_ious.append(iou.gather(1, scores.argmax(1, keepdim=True))[:, 0])
    return {"box_iou": float(torch.cat(box_ious).mean()), "point_iou": float(torch.cat(point_ious).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    sam = build_sam(DEMO).train()
    optimizer = torch.optim.AdamW(sam.parameters(), lr=args.lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.1
    )
    start, running = time.perf_counter(), None
    for step in range(1, args.steps + 1):
        loss = train_step(sam, optimizer, rng)
        schedule.step()
        running = loss if running is None else 0.98 * running + 0.02 * loss
        if step % 100 == 0 or step == args.steps:
            print(f"step {step:5d}  loss {running:.3f}  {time.perf_counter() - start:.0f} s", flush=True)
    sam.eval()
    scores = evaluate(sam)
    print(f"held-out domain A (10 images): box IoU {scores['box_iou']:.3f}, point IoU {scores['point_iou']:.3f}")
    save_model(sam, args.out, name="demo", architecture=DEMO)
    print(f"wrote {args.out} ({model_identity(sam, 'demo').key})")


if __name__ == "__main__":
    main()
