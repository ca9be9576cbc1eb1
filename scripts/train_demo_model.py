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

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.sam.architecture import DEMO, build_sam
from napari_sam_peft.core.sam.loading import model_identity, save_model
from napari_sam_peft.core.sam.preprocessing import model_input
from napari_sam_peft.core.training.objective import (
    correction_points,
    decode,
    mask_losses,
    object_prompts,
    start_losses,
)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "napari_sam_peft" / "data" / "demo_sam.safetensors"
MAX_OBJECTS = 8
TRAIN_SEEDS = 100_000  # training images use seeds >= this; held-out ones use 0..99


def train_step(sam, optimizer, rng, corrections: int = 2) -> float:
    """One step on a fresh domain-A image. Unlike ``core.training.objective``, correction losses are not
    averaged over the sub-iterations: this is the recipe the bundled weights were trained with."""
    sample = make_sample("nuclei", seed=TRAIN_SEEDS + int(rng.integers(1_000_000)))
    embeddings = sam.image_encoder(model_input(sam, sample.image))
    target, boxes, points = object_prompts(sample.labels, rng, MAX_OBJECTS, 1.0, embeddings.device)
    size = target.shape[-2:]
    loss, current = start_losses(sam, embeddings, target, boxes, points)
    # The paper's correction sub-iterations: add a positive point in the missed region and a
    # negative one in the spurious region, and predict again (single-mask output).
    prompts, labels = points, torch.ones(points.shape[:2])
    for _ in range(corrections):
        new_points, new_labels = correction_points(current, target, rng)
        prompts, labels = torch.cat([prompts, new_points], 1), torch.cat([labels, new_labels], 1)
        logits, iou = decode(sam, embeddings, size, points=prompts, labels=labels)
        corrected_loss, corrected_true = mask_losses(logits, target)
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
        embeddings = sam.image_encoder(model_input(sam, sample.image))
        target, boxes, points = object_prompts(sample.labels, rng, 64, 1.0, embeddings.device)
        size = target.shape[-2:]
        logits, _ = decode(sam, embeddings, size, boxes=boxes)
        box_ious.append(mask_losses(logits, target)[1][:, 0])
        logits, scores = decode(sam, embeddings, size, points=points, multimask=True)
        iou = mask_losses(logits, target)[1]
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
