"""Automatic segmentation with a base model (no instance decoder): seconds and mSA, three ways, same run.

- **micro_sam defaults**: micro_sam's ``AutomaticMaskGenerator`` at its defaults (32 x 32 points,
  batches of 64, ``generate()``'s thresholds: predicted IoU 0.88, stability 0.95), float32;
- **before**: what napari-sam-peft ran before issue 41: micro_sam's generator with our grid default
  (16 x 16 for a 256 px input like LiteMedSAM's, 32 x 32 for 1024 px) and our thresholds (0.8, 0.9,
  objects of 25 pixels or more), float32;
- **now**: ``core.annotation.automatic.automatic_segmentation`` as the annotator calls it: the grid sized
  to the image and the typical annotated object (here the truth's median box side, as the store's
  objects would give), masks below the IoU threshold dropped before upscaling, 256 points a batch,
  in the precision the session embeds in (``auto``: bfloat16 where the probe finds it native and faster).

Embeddings are computed once per image or slice and shared (not timed). A volume is segmented slice
by slice and merged across z with micro_sam's ``merge_instance_segmentation_3d`` each way, as
``core.volume.automatic`` does. Every row runs on the same images in one process, one after the other.

Usage::

    python benchmarks/automatic_speed.py --model lite_medsam --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _amg(predictor, image, embeddings, how: str, object_size: float | None, autocast) -> object:
    import numpy as np
    from micro_sam.instance_segmentation import AutomaticMaskGenerator

    from napari_sam_peft.core.annotation.automatic import automatic_segmentation, default_points_per_side

    if how == "now":
        return automatic_segmentation(predictor, image, embeddings, object_size=object_size, autocast=autocast)
    if how == "micro_sam":
        generator = AutomaticMaskGenerator(predictor)
        generator.initialize(image, image_embeddings=embeddings)
        result = generator.generate()
    else:
        generator = AutomaticMaskGenerator(predictor, points_per_side=default_points_per_side(predictor))
        generator.initialize(image, image_embeddings=embeddings)
        result = generator.generate(pred_iou_thresh=0.8, stability_score_thresh=0.9, min_mask_region_area=25)
    return np.zeros(image.shape[:2], np.uint32) if isinstance(result, list) else np.asarray(result, np.uint32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lite_medsam")
    parser.add_argument("--domain", default="nuclei", help="the 2D image's generated domain")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", default="micro_sam,before,now")
    parser.add_argument(
        "--volume-rows",
        default="micro_sam,before,now",
        help="the rows that also segment the volume (micro_sam's 32 x 32 grid takes about a minute a slice)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from elf.evaluation import mean_segmentation_accuracy
    from micro_sam.multi_dimensional_segmentation import merge_instance_segmentation_3d
    from micro_sam.util import precompute_image_embeddings
    from segment_anything import SamPredictor

    from napari_sam_peft.core.annotation.automatic import typical_object_size
    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.data.sample_volume import make_volume
    from napari_sam_peft.core.evaluation.volume import embed_slices
    from napari_sam_peft.core.sam.loading import load_model
    from napari_sam_peft.core.sam.precision import resolve_precision
    from napari_sam_peft.core.sam.precision_probe import model_probe
    from napari_sam_peft.core.volume.volumes import volume_slice

    torch.set_num_threads(args.threads)
    model = load_model(args.model, device="cpu")
    predictor = SamPredictor(model.sam)
    precision = resolve_precision("auto", model.device, model_probe(model.sam), use="embed")
    sample = make_sample(args.domain, seed=100, shape=(512, 512))
    volume = make_volume(seed=100)
    image_embeddings = precompute_image_embeddings(predictor, sample.image, ndim=2, verbose=False)
    features = embed_slices(predictor, volume.image)

    def boxes(labels: np.ndarray) -> list[tuple[int, ...]]:
        from scipy import ndimage

        found = ndimage.find_objects(labels.astype(np.int64))
        return [tuple(s.start for s in f) + tuple(s.stop for s in f) for f in found if f is not None]

    results = []
    for how in args.rows.split(","):
        row = {"row": how, "precision": precision.name if how == "now" else "fp32"}
        size = typical_object_size(boxes(sample.labels))
        start = time.perf_counter()
        labels = _amg(predictor, sample.image, image_embeddings, how, size, precision.autocast)
        row["image_s"] = time.perf_counter() - start
        row["image_msa"] = float(mean_segmentation_accuracy(labels, sample.labels))
        if how not in args.volume_rows.split(","):
            results.append(row)
            print(json.dumps(row), flush=True)
            continue
        size = typical_object_size(boxes(volume.labels))
        start = time.perf_counter()
        stack = np.zeros(volume.labels.shape, np.uint32)
        offset = 0
        for z in range(volume.labels.shape[0]):
            from micro_sam.util import set_precomputed

            embeddings = features.slice_embeddings(z)
            set_precomputed(predictor, embeddings)
            plane = _amg(predictor, volume_slice(volume.image, z), embeddings, how, size, precision.autocast)
            stack[z] = np.where(plane > 0, plane + offset, 0)
            offset += int(plane.max())
        merged = merge_instance_segmentation_3d(stack, beta=0.5, with_background=True, verbose=False)
        row["volume_s"] = time.perf_counter() - start
        row["volume_msa"] = float(mean_segmentation_accuracy(np.asarray(merged), volume.labels))
        results.append(row)
        print(json.dumps(row), flush=True)
    print("| method | precision | 512 x 512 image: s | mSA | 24-slice volume: s | 3D mSA |")
    print("|---|---|---|---|---|---|")
    for r in results:
        volume = f"{r['volume_s']:.1f} | {r['volume_msa']:.3f}" if "volume_s" in r else "not run | —"
        print(f"| {r['row']} | {r['precision']} | {r['image_s']:.1f} | {r['image_msa']:.3f} | {volume} |")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
