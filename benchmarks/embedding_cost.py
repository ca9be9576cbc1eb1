"""What each model family needs on this machine: input size, parameters, seconds and memory per embedding.

One 512 x 512 generated nuclei image is embedded the way each family's predictor does it, each model in
its own process (so peak memory is its own):

- SAM 1 models (LiteMedSAM, vit_t, vit_b): micro_sam's ``precompute_image_embeddings``, as the annotator
  embeds;
- SAM 2.1 models (hvit_t, hvit_s, hvit_b, hvit_l): Meta's ``SAM2ImagePredictor.set_image`` (micro_sam dev's
  ``encode_image`` calls it), which computes the image embedding and the decoder's high-resolution features.

Weights: LiteMedSAM's pretrained ones (bundled); the others random, built from the packages' classes at
their real sizes (no weights can be downloaded here; time and memory do not depend on the values). Each
row: one warm-up embedding, then the median of ``--repeats``; memory is the process's peak resident set
during the embeddings minus the resident set with the model loaded.

Usage::

    python benchmarks/embedding_cost.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from child_run import measured_in_child, write_rows

MODELS = ("lite_medsam", "vit_t", "vit_b", "hvit_t", "hvit_s", "hvit_b", "hvit_l")


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, repeats: int, threads: int, precision: str) -> dict:
    """Embed the image ``repeats`` times with model ``name`` in this process."""
    import contextlib

    import psutil
    import torch

    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.sam.architecture import NAMED_ARCHITECTURES, build_sam
    from napari_sam_peft.core.sam.loading import load_model
    from napari_sam_peft.core.sam.registry import family_for, is_sam1

    torch.set_num_threads(threads)
    image = make_sample("nuclei", seed=100, shape=(512, 512)).image
    if name == "lite_medsam":
        model = load_model(name, device="cpu")
        sam, architecture = model.sam, model.architecture
    else:
        architecture = NAMED_ARCHITECTURES[name]
        torch.manual_seed(0)
        sam = build_sam(architecture, device="cpu")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    if is_sam1(architecture):
        from micro_sam.util import precompute_image_embeddings
        from segment_anything import SamPredictor

        predictor = SamPredictor(sam)

        def embed() -> None:
            with autocast:
                precompute_image_embeddings(predictor, image, ndim=2, verbose=False)

    else:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        sam2_predictor = SAM2ImagePredictor(sam)
        from napari_sam_peft.core.sam.internals import to_image

        rgb = to_image(image)  # uint8 RGB, as micro_sam gives SAM 1 (SAM2Transforms wants 8 bit)

        def embed() -> None:
            with torch.inference_mode(), autocast:
                sam2_predictor.set_image(rgb)

    loaded_rss = psutil.Process().memory_info().rss / 2**20
    embed()  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        embed()
        seconds.append(time.perf_counter() - start)
    return {
        "model": name,
        "family": family_for(architecture).name,
        "input": architecture.img_size,
        "parameters": sum(p.numel() for p in sam.parameters()),
        "precision": precision,
        "seconds": statistics.median(seconds),
        "embedding_mib": _peak_rss_mib() - loaded_rss,
        "loaded_mib": loaded_rss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--precisions", default="fp32,bf16", help="bf16 only where the CPU computes it natively")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process: model,precision
    args = parser.parse_args(argv)
    if args.one is not None:
        name, precision = args.one.split(",")
        print(json.dumps(measure(name, args.repeats, args.threads, precision)))
        return 0
    rows = []
    for name in args.models.split(","):
        for precision in args.precisions.split(","):
            child = [sys.executable, __file__, "--one", f"{name},{precision}", "--repeats", str(args.repeats)]
            child += ["--threads", str(args.threads)]
            rows.append(measured_in_child(child, f"Measuring {name} in {precision}"))
            print(json.dumps(rows[-1]), flush=True)
    header = "| model | family | input | parameters | precision | s per embedding | embedding memory "
    header += "| process, model loaded |"
    print(header)
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['family']} | {r['input']} | {r['parameters'] / 1e6:.1f} M | {r['precision']} "
            f"| {r['seconds']:.2f} | {r['embedding_mib']:.0f} MiB | {r['loaded_mib']:.0f} MiB |"
        )
    write_rows(rows, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
