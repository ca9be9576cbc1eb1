"""Which precision is fastest for this model on this machine, measured rather than read off a CPU flag.

A CPU that lists ``avx512_bf16`` has bfloat16 instructions, not fast bfloat16 kernels for every
operation SAM runs: on some CPUs without AMX, oneDNN's bfloat16 matrix products and transposed
convolutions are many times slower than float32's (a frozen-encoder training step took 48.7 s in
bfloat16 against 0.82 s in float32 on such an Intel Xeon). So ``auto`` runs a short *probe* of the
model's own work in each precision the device offers, and takes the fastest whose numbers agree
with float32's:

- **embed**: the last encoder block forward, without gradients (what the annotator's embeddings
  and re-embedding after a reload cost; ViT blocks on a 24 x 24 token crop, TinyViT's at their
  own size);
- **train**: that block forward and backward, plus one mask-decoder pass from a box prompt at the
  real embedding size, forward and backward (what a training step is made of);
- **decoder**: the decoder pass alone (a step with the whole encoder frozen, ``freeze_encoder`` and
  ``decoder_lora``);
- **agreement**: the cosine similarity of the block's and the decoder's outputs with float32's.

A probe takes a few hundred milliseconds on a CPU (once per machine, device, model architecture
and torch version: the figures are cached in ``probe.json`` in the cache folder). It runs on
copies of the block and the decoder, so the live model is never touched.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ... import __version__
from ..atomic import write_atomic
from ..cache_dir import default_cache_dir
from .precision import Precision, PrecisionFigures, ProbeResult, supported_precisions
from .preprocessing import embedding_channels
from .registry import family_of, image_encoder_of

#: token rows and columns of a ViT block's probe input (the block takes any size)
_CROP = 24


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s, else what ``platform`` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model() if device.type == "cpu" else device.type


def process_threads() -> int:
    """The intra-op threads a new process gets (a training run, the figures' user): ``OMP_NUM_THREADS``,
    else one per CPU the process may run on. Not ``torch.get_num_threads()``: OpenMP keeps that count per
    thread, so the GUI thread and a worker thread of one process can disagree, and the Finetune panel
    then missed the figures the Segment panel's worker had measured."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def probe_key(sam: nn.Module, device: torch.device) -> str:
    """What the figures depend on: machine, device, the model's architecture, torch and its threads, and
    this package's version (its code runs the probe)."""
    shapes = sorted((n, tuple(p.shape)) for n, p in sam.named_parameters())
    architecture = hashlib.sha256(repr(shapes).encode()).hexdigest()[:16]
    threads = f" {process_threads()} threads" if device.type == "cpu" else ""
    family = family_of(image_encoder_of(sam)).name
    versions = f"torch {torch.__version__} | napari-sam-peft {__version__}"
    return f"{_machine(device)} | {device.type}{threads} | {family} {architecture} | {versions}"


def _meta_tensors(module: nn.Module) -> dict[int, Any]:
    """A deepcopy memo that turns every parameter and buffer of ``module`` into an empty meta tensor."""
    memo: dict[int, Any] = {}
    for parameter in module.parameters():
        memo[id(parameter)] = nn.Parameter(torch.empty_like(parameter, device="meta"), parameter.requires_grad)
    for buffer in module.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return memo


class _Reached(Exception):
    """Raised by the hook that found the last block's input: the rest of the encoder need not run."""


def _block_input(sam: nn.Module, device: torch.device) -> tuple[Any, torch.Tensor]:
    """A copy of the last encoder block and a random input of the shape it takes (shapes found on meta)."""
    encoder = image_encoder_of(sam)
    family = family_of(encoder)
    last_block = family.block_paths(encoder)[-1]
    meta = copy.deepcopy(encoder, memo=_meta_tensors(encoder))  # shapes only: no weights copied
    x = torch.empty(1, 3, family.input_size(encoder), family.input_size(encoder), device="meta")
    shape: list[int] = []

    def keep_shape(_module: nn.Module, args: tuple[Any, ...]) -> None:
        shape.extend(args[0].shape)
        raise _Reached

    handle = meta.get_submodule(last_block).register_forward_pre_hook(keep_shape)
    try:
        meta(x)
    except _Reached:
        pass
    finally:
        handle.remove()
    if len(shape) == 4:  # a ViT or Hiera block (1, H, W, C) runs on any H, W: a crop keeps the probe short
        shape[1], shape[2] = min(shape[1], _CROP), min(shape[2], _CROP)
    block = encoder.get_submodule(last_block)
    generator = torch.Generator().manual_seed(0)
    return copy.deepcopy(block).float().requires_grad_(True), torch.randn(shape, generator=generator).to(device)


def _decoder_inputs(sam: Any, device: torch.device) -> tuple[Any, Any, torch.Tensor]:
    prompt_encoder = copy.deepcopy(sam.prompt_encoder).float().requires_grad_(False)
    decoder = copy.deepcopy(sam.mask_decoder).float().requires_grad_(True)
    side = prompt_encoder.image_embedding_size
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randn(1, embedding_channels(sam), *side, generator=generator).to(device)
    return prompt_encoder, decoder, embeddings


def _timed(
    run: Callable[[], torch.Tensor], device: torch.device, give_up: float = float("inf")
) -> tuple[float, torch.Tensor]:
    """The faster of two runs after a warm-up (which creates the kernels' plans and is not counted).

    A run slower than ``give_up`` seconds ends the timing at once (its time is the figure), so a
    pathologically slow precision does not make the probe itself slow.
    """

    def once() -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        out = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start, out

    best, out = once()
    for _ in range(2):
        seconds, out = once()
        best = min(best, seconds)
        if best > give_up:
            break
    return best, out


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float().flatten(), b.detach().float().flatten()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return 0.0
    return min(1.0, float(torch.nn.functional.cosine_similarity(a, b, dim=0)))


def measure(sam: Any, candidates: list[str]) -> ProbeResult:
    """Run the probe for each of ``candidates`` (float32 first) on the device ``sam`` is on."""
    device = next(sam.parameters()).device
    block, block_input = _block_input(sam, device)
    prompt_encoder, decoder, embeddings = _decoder_inputs(sam, device)
    side = prompt_encoder.input_image_size[0]
    box = torch.tensor([[side * 0.25, side * 0.25, side * 0.6, side * 0.7]], device=device)

    def embed() -> torch.Tensor:
        with torch.no_grad():
            return block(block_input)

    def decode(x: torch.Tensor) -> torch.Tensor:
        sparse, dense = prompt_encoder(points=None, boxes=box, masks=None)
        logits, iou = decoder(x, prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=False)
        return logits

    def train_block(precision: Precision) -> torch.Tensor:
        x = block_input.detach().requires_grad_()
        with precision.autocast():
            out = block(x)
        out.float().square().mean().backward()
        block.zero_grad(set_to_none=True)
        return out

    def train_decoder(precision: Precision) -> torch.Tensor:
        with precision.autocast():
            logits = decode(embeddings.detach().requires_grad_())
        logits.float().sigmoid().mean().backward()
        decoder.zero_grad(set_to_none=True)
        return logits

    figures: list[PrecisionFigures] = []
    reference: tuple[torch.Tensor, torch.Tensor] | None = None
    for name in ["fp32", *[c for c in candidates if c != "fp32"]]:
        precision = Precision(name, device.type)
        fp32 = figures[0] if figures else None
        with precision.autocast():
            embed_s, block_out = _timed(embed, device, 3 * fp32.embed_s if fp32 else float("inf"))
        if fp32 is not None and embed_s > 3 * fp32.embed_s:
            # three times slower on the block alone: the training probe (seconds of it) would only confirm it
            assert reference is not None
            figures.append(PrecisionFigures(name, embed_s, None, _agreement(block_out, reference[0])))
            continue
        block_s, _ = _timed(functools.partial(train_block, precision), device)
        decoder_s, logits = _timed(functools.partial(train_decoder, precision), device)
        if reference is None:
            reference = (block_out, logits)
            agreement = 1.0
        else:
            agreement = min(_agreement(block_out, reference[0]), _agreement(logits, reference[1]))
        figures.append(PrecisionFigures(name, embed_s, block_s + decoder_s, agreement, decoder_s))
    return ProbeResult(probe_key(sam, device), tuple(figures))


# ---------------------------------------------------------------- the cache
class ProbeCache:
    """Probe results by key, in one JSON file: ``path``, else ``$NAPARI_SAM_PEFT_PROBE_CACHE``, else
    ``probe.json`` in the cache folder."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        path = path or os.environ.get("NAPARI_SAM_PEFT_PROBE_CACHE") or default_cache_dir() / "probe.json"
        self.path = Path(path)

    def _read(self) -> dict:
        try:
            values = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return values if isinstance(values, dict) else {}

    def get(self, key: str) -> ProbeResult | None:
        """The stored result for ``key``, or None (also for an unreadable file)."""
        values = self._read().get(key)
        try:
            return ProbeResult.from_json(values) if values else None
        except (KeyError, TypeError):
            return None

    def put(self, result: ProbeResult) -> None:
        """Store ``result`` (the file is replaced atomically)."""
        values = self._read()
        values[result.key] = result.to_json()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(values, indent=1, sort_keys=True))


def model_probe(sam: nn.Module, cache: ProbeCache | None = None) -> Callable[[], ProbeResult]:
    """A function that returns ``sam``'s probe result: from the cache, else measured (and stored) once."""
    found: list[ProbeResult] = []

    def probe() -> ProbeResult:
        if found:
            return found[0]
        device = next(sam.parameters()).device
        store = cache or ProbeCache()
        key = probe_key(sam, device)
        result = store.get(key)
        if result is None:
            result = measure(sam, supported_precisions(device))
            try:
                store.put(result)
            except OSError:
                pass  # a read-only cache folder: measure again next time
        found.append(result)
        return result

    return probe


def cached_probe(sam: nn.Module, cache: ProbeCache | None = None) -> ProbeResult | None:
    """``sam``'s probe result if it was measured already (never measures: safe on the GUI thread)."""
    device = next(sam.parameters()).device
    return (cache or ProbeCache()).get(probe_key(sam, device))


def measured_decoder_pass(sam: nn.Module, precision: str, cache: ProbeCache | None = None) -> float | None:
    """The seconds of one mask-decoder pass (forward and backward) of ``sam`` in ``precision`` as its probe
    measured it on this machine; None before the probe ran (never measures)."""
    result = cached_probe(sam, cache)
    figure = next((f for f in result.figures if f.name == precision), None) if result is not None else None
    return figure.decoder_s if figure is not None else None
