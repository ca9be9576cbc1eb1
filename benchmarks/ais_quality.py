"""Automatic segmentation before and after joint finetuning, and AIS's time against AMG's.

"Before" is what a user of the model gets today without a decoder: micro_sam's automatic mask
generation (AMG, at micro_sam's default grid for the model's input size, 16 x 16 for a 256 px
input). "After" is automatic instance segmentation (AIS) with micro_sam's UNETR decoder trained
jointly with the adapter (``train --with-decoder``) on 3 annotated generated images (seeds 0-2),
and AMG with the same adapter. Everything is scored with mSA on held-out generated images
(seeds 100-...), with the embedding included in each time.

Usage::

    python benchmarks/ais_quality.py --model demo --steps 100 --adapter-amg --json
    python benchmarks/ais_quality.py --model lite_medsam --steps 60 --held-out 2 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import time

TRAIN_SEEDS = (0, 1, 2)
HELD_OUT_SEEDS = (100, 101, 102, 103, 104)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo", choices=("demo", "lite_medsam"))
    parser.add_argument("--domain", default="cells", choices=("cells", "nuclei"))
    parser.add_argument("--preset", default="late_lora")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--held-out", type=int, default=3)
    parser.add_argument("--points-per-side", type=int, default=None, help="AMG grid (default: micro_sam's)")
    parser.add_argument("--adapter-amg", action="store_true", help="also time AMG with the adapter (slow)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch
    from segment_anything import SamPredictor

    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.evaluation.automatic import evaluate_automatic
    from napari_sam_peft.core.instance import build_decoder
    from napari_sam_peft.core.peft.recommend import recommended_lr
    from napari_sam_peft.core.sam.loading import load_model
    from napari_sam_peft.core.training.job import peft_spec
    from napari_sam_peft.core.training.loop import TrainingConfig, train

    torch.manual_seed(0)
    model = load_model(args.model, device="cpu")
    train_samples = [(s.image, s.labels) for s in (make_sample(args.domain, seed) for seed in TRAIN_SEEDS)]
    held_out = [
        (s.image, s.labels) for s in (make_sample(args.domain, s) for s in HELD_OUT_SEEDS[: args.held_out])
    ]
    spec = peft_spec(args.preset, model.architecture.depth)
    lr = args.lr or recommended_lr(spec.method, model.architecture)
    rows = []

    def score(label: str, decoder) -> None:
        result = evaluate_automatic(
            SamPredictor(model.sam), decoder, held_out, points_per_side=args.points_per_side
        )
        rows.append({"row": label, **result.__dict__})
        print(
            f"{label:<34} {result.method}  mSA {result.msa:.3f}  {result.seconds_per_image:.2f} s/image",
            flush=True,
        )

    score("base, AMG", None)
    start = time.perf_counter()
    config = TrainingConfig(
        steps=args.steps,
        lr=lr,
        objects_per_image=4,
        sub_iterations=4,
        validate_every=max(args.steps // 4, 1),
        with_decoder=True,
    )
    adapter = train(model, spec, train_samples, config=config)
    train_seconds = time.perf_counter() - start
    print(f"trained {args.preset} + decoder, {args.steps} steps, lr {lr:g}: {train_seconds:.0f} s", flush=True)
    handle = adapter.attach_to(model)
    try:
        if args.adapter_amg:
            score(f"+ {args.preset}, AMG", None)
        score(f"+ {args.preset} + decoder, AIS", build_decoder(model.sam, adapter.decoder))
    finally:
        handle.detach()
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "domain": args.domain,
                    "steps": args.steps,
                    "lr": lr,
                    "train_seconds": train_seconds,
                    "machine": platform.processor() or platform.machine(),
                    "rows": rows,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
