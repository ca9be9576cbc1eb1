"""Interactive latency: embedding, cached reopen and prompt-to-mask, ours vs micro_sam's functions.

For each model (the vit_b and vit_t architectures with random weights at 1024 px, the bundled
LiteMedSAM at 256 px and the bundled demo model) it measures, on the same image and in the same run:

- **embedding**: the image encoder on a new image, written to the on-disk cache
  (ours: ``SessionEmbeddings.compute``, in ``auto`` (the precision its probe measured
  fastest on this model, as users get it) and in float32; micro_sam: ``precompute_image_embeddings``
  with a zarr ``save_path``, which always embeds in float32: it has no mixed-precision path). The
  column "auto / fp32" flags (**SLOWER**) a model whose auto embedding is over 5% slower than float32;
- **cached reopen**: the same image again, read from disk;
- **prompt-to-mask**: one positive point to a mask from the cached embeddings
  (ours: ``LiveModel.segment``; micro_sam: ``segment_from_points``), median of N.

Run: ``python benchmarks/interactive.py [--models vit_b,vit_t,lite_medsam,demo] [--device auto]
[--repeats 20]``. Weights do not matter for speed, so vit_b and vit_t are built from their
architectures (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.sam.architecture import build_sam
from napari_sam_peft.core.sam.devices import select_device
from napari_sam_peft.core.sam.loading import LoadedModel, load_model, model_identity
from napari_sam_peft.core.sam.registry import NAMED_ARCHITECTURES
from napari_sam_peft.core.sam.vit_attention import use_plain_attention
from napari_sam_peft.session import AnnotatorSession

RANDOM_WEIGHTS = ("vit_b", "vit_t")  # built from the architecture: their weights are not bundled
SLOWER = 1.05  # auto counts as slower than float32 past this ratio (timing noise stays under it)


def _model(name: str, device: torch.device) -> LoadedModel:
    if name in RANDOM_WEIGHTS:
        torch.manual_seed(0)
        architecture = NAMED_ARCHITECTURES[name]
        sam = build_sam(architecture).to(device).eval()
        return LoadedModel(sam, model_identity(sam, f"{name} (random)"), architecture, "benchmark")
    return load_model(name, device=device)


def _timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def bench_model(name: str, device: torch.device, repeats: int) -> dict[str, float | str]:
    from micro_sam.prompt_based_segmentation import segment_from_points
    from micro_sam.util import precompute_image_embeddings
    from segment_anything import SamPredictor

    model = _model(name, device)
    size = model.architecture.img_size
    image = make_sample("cells", seed=1, shape=(size, size)).image
    point = np.array([[size * 0.5, size * 0.5]])
    results: dict[str, float | str] = {"model": name, "image": f"{size} x {size}"}
    with tempfile.TemporaryDirectory() as tmp:
        # Ours: through the session and its cache, in float32 first, then in auto (as users get it).
        session = AnnotatorSession(cache=EmbeddingCache(Path(tmp) / "ours"))
        session.model.set_base(model)  # runs (or reads) the precision probe
        results["precision"], results["probe"] = session.model.precision.name, session.model.precision.probe
        for precision in ("fp32", "auto"):
            session.model.set_precision(precision)
            session.embeddings.compute(make_sample("cells", seed=98, shape=(size, size)).image)  # warm-up
            results[f"embed_ours_{precision}"], (_, embeddings) = _timed(session.embeddings.compute, image)
        results["embed_ours"] = results["embed_ours_auto"]
        results["reopen_ours"], _ = _timed(session.embeddings.compute, image)
        prompts = [ObjectPrompts(points=point, labels=[1])]
        session.model.segment(embeddings, prompts)
        results["prompt_ours"] = statistics.median(
            _timed(session.model.segment, embeddings, prompts)[0] for _ in range(repeats)
        )

        # micro_sam's own functions on the same model, with segment_anything's attention (as its users run it).
        predictor = SamPredictor(use_plain_attention(model.sam))
        predictor.model_type, predictor.model_name = model.architecture.name, name
        save = str(Path(tmp) / "micro_sam.zarr")
        results["embed_micro_sam"], embeddings = _timed(
            precompute_image_embeddings, predictor, image, save_path=save, verbose=False
        )
        results["reopen_micro_sam"], _ = _timed(
            precompute_image_embeddings, predictor, image, save_path=save, verbose=False
        )
        labels = np.array([1])
        segment_from_points(predictor, point, labels, image_embeddings=embeddings)
        results["prompt_micro_sam"] = statistics.median(
            _timed(segment_from_points, predictor, point, labels, image_embeddings=embeddings)[0]
            for _ in range(repeats)
        )
    return results


def _machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return f"{cpu}, {torch.get_num_threads()} threads{gpu}; torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vit_b,vit_t,lite_medsam,demo")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = select_device(args.device)
    print(f"device: {device.type}; machine: {_machine(device)}\n")
    print(
        "| model | image | embedding, ours auto | embedding, ours fp32 | auto / fp32 "
        "| embedding, micro_sam (fp32) | cached reopen, ours | cached reopen, micro_sam "
        "| prompt-to-mask, ours | prompt-to-mask, micro_sam |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    slower, probes = [], []
    for name in args.models.split(","):
        r = bench_model(name.strip(), device, args.repeats)
        ratio = float(r["embed_ours_auto"]) / float(r["embed_ours_fp32"])
        flag = f"**{ratio:.2f}x SLOWER**" if ratio > SLOWER else f"{ratio:.2f}x"
        if ratio > SLOWER:
            slower.append(str(r["model"]))
        probes.append(f"- {r['model']}: auto = {r['precision']} ({r['probe'] or 'float32 is the only candidate'})")
        print(
            f"| {r['model']} | {r['image']} | {r['embed_ours_auto']:.2f} s ({r['precision']}) | "
            f"{r['embed_ours_fp32']:.2f} s | {flag} | {r['embed_micro_sam']:.2f} s | "
            f"{r['reopen_ours'] * 1000:.0f} ms | {r['reopen_micro_sam'] * 1000:.0f} ms | "
            f"{r['prompt_ours'] * 1000:.1f} ms | {r['prompt_micro_sam'] * 1000:.1f} ms |",
            flush=True,
        )
    print("\nThe precision probe's figures (one encoder block, without gradients):")
    print("\n".join(probes))
    for name in slower:
        print(f"- {name}: ours in auto embedded slower than ours in fp32")


if __name__ == "__main__":
    main()
