"""Adapter reload, for ``benchmarks/training.py``: after training a new adapter, the time until the user
sees a mask from it on the current image (512x512), ours next to micro_sam's path.

- **ours**: ``session.model.set_adapter(B)`` (read, verify and attach the file in place)
  + ``session.embeddings.compute`` (which runs only the adapted blocks from the kept block-k input)
  + one box prompt. The session embedded the image with the base model (``prepare_reloads`` set
  to the first adapted stage, as the Finetune widget does) and with adapter A first.
- **full re-embedding**: what micro_sam's annotator has to do, since it cannot swap
  weights in a loaded model: ``get_sam_model`` on a merged checkpoint of base + B (written
  with ``Adapter.merged_state_dict``), ``precompute_image_embeddings`` and one
  ``segment_from_box``. For scale, the table also gives our session's full encoder run
  (a new session with B attached and no kept stage input).

Ours embeds in the session's auto precision (bfloat16 where the hardware has it natively, see
docs/annotate.md), micro_sam's annotator in float32, as each user gets it; the row says which.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.peft import Adapter, PeftSpec, attach
from napari_sam_peft.core.sam.loading import LoadedModel
from napari_sam_peft.core.training.estimate import first_trained_stage
from napari_sam_peft.session import AnnotatorSession

# The script's folder is on sys.path when it runs as ``python benchmarks/training.py``.
from peft_methods import synchronize
from training_measure import IMAGE_SHAPE, load, spec_of

RELOAD_ROWS = ("late_lora:6-11", "late_ft:11")
RELOAD_SEED = 100  # the image shown in the annotator when the new adapter arrives


def write_adapter(model: LoadedModel, spec: PeftSpec, path: Path, seed: int) -> Path:
    """An adapter with random trained values (a small perturbation of its initial ones)."""
    handle = attach(model.sam, spec)
    generator = torch.Generator().manual_seed(seed)
    try:
        with torch.no_grad():
            for param in handle.trainable_parameters():
                noise = torch.randn(param.shape, generator=generator) * 1e-3
                param.add_(noise.to(param.device))
        return Adapter.from_attached(handle, model).save(path)
    finally:
        handle.detach()


def object_box(labels: np.ndarray) -> list[int]:
    """The bounding box (row_min, col_min, row_max, col_max) of the first labelled object."""
    rows, cols = np.nonzero(labels == np.unique(labels[labels > 0])[0])
    return [int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())]


def measure_reload(row: str, image_size: int, device: torch.device) -> dict:
    """Time to the first mask from a new adapter: ours (attach + re-embed from the kept input) and micro_sam's."""
    from micro_sam.prompt_based_segmentation import segment_from_box
    from micro_sam.util import get_sam_model, precompute_image_embeddings

    model = load("vit_b", device, image_size)
    arch = model.architecture
    spec = spec_of(row, arch.depth)
    sample = make_sample("cells", seed=RELOAD_SEED, shape=IMAGE_SHAPE)
    image, box = sample.image, object_box(sample.labels)
    prompts = [ObjectPrompts(box=box)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        adapter_a = write_adapter(model, spec, folder / "a.safetensors", seed=1)
        adapter_b = write_adapter(model, spec, folder / "b.safetensors", seed=2)

        # Ours: the base embedding keeps the block-k input; adapter A warms up the reload path.
        session = AnnotatorSession(cache=EmbeddingCache(folder / "cache"))
        session.model.set_base(model)
        first_stage = first_trained_stage(spec, arch)
        session.embeddings.prepare_reloads(first_stage)
        session.embeddings.compute(image)
        session.model.set_adapter(adapter_a)
        session.model.segment(session.embeddings.compute(image)[1], prompts)
        reembedded = session.embeddings.reembedded_from_stage
        start = time.perf_counter()
        session.model.set_adapter(adapter_b)
        attached = time.perf_counter()
        _, embeddings = session.embeddings.compute(image)
        embedded = time.perf_counter()
        session.model.segment(embeddings, prompts)
        done = time.perf_counter()
        if session.embeddings.reembedded_from_stage != reembedded + 1:
            raise RuntimeError("The session re-embedded with the whole encoder, not from the kept stage input.")
        session.model.set_adapter(None)

        # Ours without a kept stage input: a new session runs the whole encoder with B attached.
        fresh = AnnotatorSession(cache=EmbeddingCache(folder / "fresh"))
        fresh.model.set_base(model)
        fresh.model.set_adapter(adapter_b)
        full_start = time.perf_counter()
        fresh.embeddings.compute(image)
        full_embed = time.perf_counter() - full_start
        fresh.model.set_adapter(None)

        # micro_sam's annotator: load a merged checkpoint, embed the image, segment.
        checkpoint = folder / "merged_b.pth"
        torch.save(Adapter.load(adapter_b).merged_state_dict(model), checkpoint)
        size_kwargs = {} if arch.img_size == 1024 else {"image_size": arch.img_size}
        load_start = time.perf_counter()
        predictor = get_sam_model(model_type="vit_b", device=device, checkpoint_path=checkpoint, **size_kwargs)
        synchronize(device)
        loaded = time.perf_counter()
        micro_embeddings = precompute_image_embeddings(predictor, image, verbose=False)
        micro_embedded = time.perf_counter()
        segment_from_box(predictor, np.array(box), image_embeddings=micro_embeddings)
        micro_done = time.perf_counter()
    return {
        "status": "ok",
        "first_stage": first_stage,
        "precision": session.model.precision.name,
        "ours_total_s": done - start,
        "ours_attach_s": attached - start,
        "ours_reembed_s": embedded - attached,
        "ours_prompt_s": done - embedded,
        "ours_full_embed_s": full_embed,
        "micro_sam_total_s": micro_done - load_start,
        "micro_sam_load_s": loaded - load_start,
        "micro_sam_embed_s": micro_embedded - loaded,
        "micro_sam_prompt_s": micro_done - micro_embedded,
    }
