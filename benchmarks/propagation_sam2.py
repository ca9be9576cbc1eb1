"""Shift+S on a volume: SAM 2.1's memory (Meta's video predictor) against the SAM 1 path (micro_sam's
``segment_mask_in_volume``), same volume, same seeds, same run.

One generated nuclei volume (``make_volume(seed=0)``, 24 x 256 x 256). Each model embeds every slice the
way the annotator does (``SamPredictor.set_image``; for SAM 2.1 the packed embedding with its
high-resolution maps), then propagates the ``--objects`` largest objects, each from its **true mask on
its middle slice** (the same seed for every model: the numbers measure propagation, not the first
mask), with what ``Shift+S`` runs for the model: micro_sam's annotator_3d defaults for SAM 1 (LiteMedSAM:
the box projection, ``propagation.default_settings``), the video predictor with micro_sam dev's stopping
rule for SAM 2.1. Reported: seconds per slice embedded, seconds per object propagated (median), slices
reached, and the 3D IoU of each propagated object against the truth (mean).

Models: LiteMedSAM (its pretrained weights, bundled), and at 1024 px ``vit_b`` (SAM 1) and ``hvit_t``
(SAM 2.1) with random weights from seed 0: no SAM weights can be downloaded here, so their IoU says
nothing about quality (their time and memory do not depend on the values). ``--models`` picks.

Usage::

    python benchmarks/propagation_sam2.py --json out.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from child_run import write_rows
from napari_sam_peft.core.data.sample_volume import make_volume
from napari_sam_peft.core.sam.architecture import NAMED_ARCHITECTURES, build_sam
from napari_sam_peft.core.sam.internals import to_image
from napari_sam_peft.core.sam.loading import LoadedModel, load_model, model_identity
from napari_sam_peft.core.volume.propagation import default_settings, propagate, propagates_with_memory
from napari_sam_peft.core.volume.slice_features import VolumeFeatures

MODELS = ("lite_medsam", "vit_b", "hvit_t")


def load(name: str) -> LoadedModel:
    """LiteMedSAM with its weights; any other name at its real size with random weights (seed 0)."""
    if name == "lite_medsam":
        return load_model(name, device="cpu")
    torch.manual_seed(0)
    architecture = NAMED_ARCHITECTURES[name]
    sam = build_sam(architecture, device="cpu").eval()
    return LoadedModel(sam, model_identity(sam, f"{name} (random)"), architecture, "benchmark")


def embed(model: LoadedModel, volume: np.ndarray) -> tuple[VolumeFeatures, float]:
    """Every slice's embedding as the annotator stores it, and the median seconds per slice."""
    from segment_anything import SamPredictor

    predictor = SamPredictor(model.sam)
    features = VolumeFeatures(len(volume))
    seconds = []
    with torch.no_grad():
        for z, plane in enumerate(volume):
            start = time.perf_counter()
            predictor.set_image(to_image(plane))  # micro_sam's 0-255 RGB, as the annotator embeds
            seconds.append(time.perf_counter() - start)
            sizes = {"input_size": predictor.input_size, "original_size": predictor.original_size}
            features.put(z, {"features": predictor.features.cpu().numpy(), **sizes})
    return features, statistics.median(seconds)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean volumes."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def bench(name: str, objects: int) -> dict:
    """One model: embedding, then each object propagated from its true middle-slice mask."""
    from segment_anything import SamPredictor

    model = load(name)
    sample = make_volume(seed=0)
    volume, labels = sample.image, sample.labels
    features, embed_s = embed(model, volume)
    predictor = SamPredictor(model.sam)
    sizes = np.bincount(labels.ravel())[1:]
    chosen = [int(i) + 1 for i in np.argsort(sizes)[::-1][:objects]]
    times, ious, reached = [], [], []
    for label in chosen:
        truth = labels == label
        span = np.flatnonzero(truth.any(axis=(1, 2)))
        z = int(span[len(span) // 2])
        start = time.perf_counter()
        result = propagate(predictor, features, {z: truth[z]}, default_settings(model.architecture))
        times.append(time.perf_counter() - start)
        ious.append(iou(result.mask, truth))
        reached.append(result.n_slices)
    memory = propagates_with_memory(model.sam)
    return {
        "model": model.identity.name,
        "path": "SAM 2 video predictor (memory)" if memory else "segment_mask_in_volume",
        "input": model.architecture.img_size,
        "volume": "x".join(str(s) for s in volume.shape),
        "objects": len(chosen),
        "embed_s_per_slice": embed_s,
        "propagation_s_per_object": statistics.median(times),
        "slices_reached_mean": float(np.mean(reached)),
        "iou_3d_mean": float(np.mean(ious)),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    """Run the models in order and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--objects", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = [bench(name, args.objects) for name in args.models.split(",")]
    print("| model | input | path | s per slice embedded | s per object propagated | slices reached | 3D IoU |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['input']} | {r['path']} | {r['embed_s_per_slice']:.2f} | "
            f"{r['propagation_s_per_object']:.2f} | {r['slices_reached_mean']:.1f} | {r['iou_3d_mean']:.3f} |"
        )
    write_rows(rows, args.json)


if __name__ == "__main__":
    main()
