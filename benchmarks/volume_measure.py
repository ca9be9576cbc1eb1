"""Volumes, ours against micro_sam's annotator_3d functions in one run: first mask, propagation,
re-embedding after a reload, and the peak memory of embedding a large volume.

For each model (LiteMedSAM, bundled; vit_t with random weights at 1024 px, as in interactive.py):

- **first mask**: a new 32-slice volume; ours embeds the slice on screen first, so the first prompt
  waits for one slice; micro_sam's annotator embeds the whole volume first
  (``precompute_image_embeddings(..., ndim=3)``). Both then segment a box on the middle slice.
- **propagation**: one object carried through z from a box on its middle slice with cached
  embeddings, by micro_sam's ``segment_mask_in_volume`` on micro_sam's zarr embeddings, and by ours
  (the same function on our per-slice features), median of 3; IoU threshold 0, so both go through
  the whole volume.
- **reload**: after a ``late_lora`` adapter is attached, the time until the slice on screen is
  embedded again, and until the whole volume is.

``--memory``: the peak resident memory (a fresh process each) of embedding a 128-slice 512 x 512
volume with LiteMedSAM: ours (slice by slice into the cache) against micro_sam's
``precompute_image_embeddings(..., ndim=3)`` into its zarr.

Run: ``python benchmarks/volume_measure.py [--models lite_medsam,vit_t] [--memory] [--json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.prompting import segment_object
from napari_sam_peft.core.data.sample_volume import make_volume
from napari_sam_peft.core.evaluation.volume import middle_slice_box
from napari_sam_peft.core.peft import attach, spec_from_preset
from napari_sam_peft.core.volume.propagation import PropagationSettings, propagate
from napari_sam_peft.core.volume.slice_features import VolumeFeatures
from napari_sam_peft.session import AnnotatorSession
from napari_sam_peft.session.volume_annotator import VolumeAnnotator

sys.path.insert(0, str(Path(__file__).parent))
from interactive import _model  # noqa: E402 - the same models as the 2D benchmark

#: micro_sam's annotator_3d defaults, but an IoU threshold of 0: propagation then runs through the whole
#: volume whatever the model makes of the sample, so both sides time the same number of slices
SETTINGS = PropagationSettings(iou_threshold=0.0)


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def _largest(labels: np.ndarray) -> int:
    return int(np.argmax(np.bincount(labels.ravel())[1:])) + 1


def bench(name: str) -> dict:
    from micro_sam.multi_dimensional_segmentation import segment_mask_in_volume
    from micro_sam.prompt_based_segmentation import segment_from_box
    from micro_sam.util import precompute_image_embeddings
    from segment_anything import SamPredictor

    model = _model(name, torch.device("cpu"))
    sample = make_volume(seed=0, shape=(32, 256, 256))
    volume, labels = sample.image, sample.labels
    label = _largest(labels)
    z, prompts = middle_slice_box(labels, label)
    results: dict = {"model": name, "volume": "32 x 256 x 256"}
    with tempfile.TemporaryDirectory() as tmp:
        session = AnnotatorSession(cache=EmbeddingCache(Path(tmp) / "ours"))
        session.model.set_base(model)
        session.model.set_precision("fp32")
        session.embeddings.compute_slice(make_volume(seed=9, shape=(8, 256, 256)).image, 0)  # warm-up
        one_2d, _ = _timed(session.embeddings.compute_slice, make_volume(seed=8, shape=(8, 256, 256)).image, 3)
        results["one_2d_embedding_s"] = one_2d
        annotator = VolumeAnnotator(session.model, session.embeddings, volume)
        start = time.perf_counter()
        annotator.features.put(z, session.embeddings.compute_slice(volume, z)[1])
        annotator.segment_slice(z, prompts)
        results["first_mask_ours_s"] = time.perf_counter() - start
        annotator.embed(lambda: z)  # the rest, as the background job does

        predictor = SamPredictor(model.sam)
        predictor.model_type, predictor.model_name = model.architecture.name, name
        save = str(Path(tmp) / "micro_sam.zarr")
        start = time.perf_counter()
        theirs = precompute_image_embeddings(predictor, volume, save_path=save, ndim=3, verbose=False)
        box = np.asarray(prompts.box)[[1, 0, 3, 2]]  # micro_sam's boxes are (x0, y0, x1, y1)
        seed = segment_from_box(predictor, box, image_embeddings=theirs, i=z).squeeze()
        results["first_mask_micro_sam_s"] = time.perf_counter() - start

        def micro_sam_propagation():
            segmentation = np.zeros(labels.shape, dtype=np.uint32)
            segmentation[z] = seed
            return segment_mask_in_volume(
                segmentation, predictor, theirs, np.array([z]), False, False,
                SETTINGS.iou_threshold, SETTINGS.projection, box_extension=SETTINGS.box_extension,
            )  # fmt: skip

        same = VolumeFeatures(volume.shape[0])  # ours on micro_sam's embeddings: the same numbers
        for i in range(volume.shape[0]):
            same.put(i, {"features": theirs["features"][i], "input_size": theirs["input_size"],
                         "original_size": theirs["original_size"]})  # fmt: skip
        ours_seed = segment_object(session.model.predictor, same.slice_embeddings(z), prompts)
        runs = {"ours": [], "micro_sam": []}
        for _ in range(3):
            runs["micro_sam"].append(_timed(micro_sam_propagation)[0])
            runs["ours"].append(_timed(propagate, session.model.predictor, same, {z: ours_seed}, SETTINGS)[0])
        result = propagate(session.model.predictor, same, {z: ours_seed}, SETTINGS)
        results["propagated_slices"] = result.n_slices
        results["propagation_ours_s"] = statistics.median(runs["ours"])
        results["propagation_micro_sam_s"] = statistics.median(runs["micro_sam"])

        handle = attach(model.sam, spec_from_preset("late_lora", model.architecture.depth))
        with torch.no_grad():
            for parameter in handle.trainable_parameters():
                parameter.add_(torch.randn_like(parameter) * 0.01)
        from napari_sam_peft.core.peft import Adapter

        adapter = Adapter.from_attached(handle, model)
        handle.detach()
        session.model.set_adapter(adapter)
        start = time.perf_counter()
        features = annotator.features  # stale after the reload: a new, empty set
        features.put(z, session.embeddings.compute_slice(volume, z)[1])
        results["reload_visible_slice_s"] = time.perf_counter() - start
        annotator.embed(lambda: z)
        results["reload_whole_volume_s"] = time.perf_counter() - start
    return results


MEMORY_CODE = """
import resource, sys, tempfile
from pathlib import Path
import numpy as np
sys.path.insert(0, {bench!r})
import torch
from interactive import _model
from napari_sam_peft.core.data.sample_volume import make_volume
small = make_volume(seed=0, shape=(32, 128, 128)).image  # 128 slices of 512 x 512, cheap to make (uint16: 64 MiB)
volume = np.ascontiguousarray(np.tile(small.repeat(4, axis=1).repeat(4, axis=2), (4, 1, 1)))
model = _model("lite_medsam", torch.device("cpu"))
import os, threading, time
page = os.sysconf("SC_PAGE_SIZE")
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page // 1024
before, peak, running = rss(), [0], [True]
def sample():  # the resident set while embedding, every 5 ms (ru_maxrss keeps the model load's peak)
    while running[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
sampler = threading.Thread(target=sample)
sampler.start()
with tempfile.TemporaryDirectory() as tmp:
    if {which!r} == "ours":
        from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
        from napari_sam_peft.session import AnnotatorSession
        from napari_sam_peft.session.volume_annotator import VolumeAnnotator
        session = AnnotatorSession(cache=EmbeddingCache(Path(tmp) / "cache"))
        session.model.set_base(model)
        session.model.set_precision("fp32")
        VolumeAnnotator(session.model, session.embeddings, volume).embed(lambda: 64)
    else:
        from micro_sam.util import precompute_image_embeddings
        from segment_anything import SamPredictor
        predictor = SamPredictor(model.sam)
        predictor.model_type, predictor.model_name = model.architecture.name, "lite_medsam"
        precompute_image_embeddings(predictor, volume, save_path=str(Path(tmp) / "e.zarr"), ndim=3,
                                    verbose=False)
running[0] = False
sampler.join()
print(before, max(peak[0], rss()))
"""


def memory(which: str) -> tuple[float, float]:
    """Peak resident memory (GiB) of a fresh process while it embeds the 128-slice volume, and the part
    above what it held before (volume and model loaded)."""
    code = MEMORY_CODE.format(bench=str(Path(__file__).parent), which=which)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    before, peak = (int(v) for v in out.split()[-2:])
    return peak / 2**20, (peak - before) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lite_medsam,vit_t")
    parser.add_argument("--memory", action="store_true", help="also the 128-slice peak memory (minutes)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help="only the peak memory")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = [] if args.memory_only else [bench(name) for name in args.models.split(",")]
    report: dict = {"rows": rows, "threads": torch.get_num_threads()}
    if args.memory or args.memory_only:
        report["memory_gib"] = {which: memory(which) for which in ("ours", "micro_sam")}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print("| model | one 2D embedding | first mask, ours | first mask, micro_sam | propagation (slices), ours | "
          "propagation, micro_sam | reload: slice on screen | reload: whole volume |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['one_2d_embedding_s']:.2f} s | {r['first_mask_ours_s']:.2f} s | "
            f"{r['first_mask_micro_sam_s']:.2f} s | {r['propagation_ours_s']:.2f} s ({r['propagated_slices']}) | "
            f"{r['propagation_micro_sam_s']:.2f} s | {r['reload_visible_slice_s']:.2f} s | "
            f"{r['reload_whole_volume_s']:.1f} s |"
        )
    for which, (peak, above) in report.get("memory_gib", {}).items():
        print(f"peak RSS embedding 128 x 512 x 512, {which}: {peak:.2f} GiB (+{above:.3f} GiB above the start)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
