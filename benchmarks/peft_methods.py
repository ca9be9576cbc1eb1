"""Cost of one training step of every PEFT preset on SAM vit_b: ours next to micro_sam's ``PEFT_Sam``.

For each preset (and the extra row ``late_ft (block 11)``) the benchmark builds a randomly
initialised SAM vit_b (cost depends on the architecture, not on the weights), applies the
method twice, once with ``napari_sam_peft.core.peft.attachment`` and once with micro_sam's
``PEFT_Sam`` configured the same way, and reports for each implementation:

- **trainable parameters**: the number of elements of the parameters that require grad;
- **step time**: mean wall time of one training step, after one untimed warm-up step;
- **peak memory**: on CUDA ``torch.cuda.max_memory_allocated()`` (peak stats reset after the
  model is built, so it includes the resident model); on CPU the peak resident set size of
  the process (``ru_maxrss``). Both are shown as ``total (+above model)``, where "above
  model" is the peak minus the memory in use just before the first step: what training
  itself (activations, gradients, optimizer state) adds.

One training step, identical for both implementations: a random image of shape
1x3xSxS (already in SAM's normalised input form) goes through ``image_encoder``; the
prompt encoder embeds 5 random boxes; the mask decoder predicts one mask per box
(``multimask_output=False``); the loss is a dice loss between the sigmoid of the low-res
masks and a random binary target plus the MSE between the predicted IoU and a random
target; then backward, ``AdamW(lr=1e-5)`` step and ``zero_grad``. The model is in train mode.

Every (implementation, preset) pair runs in a fresh subprocess so that peak memory figures
are independent of each other.

micro_sam equivalents: full_ft is plain SAM with everything trainable; freeze_encoder is
SAM with a frozen image encoder; the other encoder methods use ``PEFT_Sam`` with the
matching surgery (LayerNormSurgery, BiasSurgery, AttentionSurgery, SSFSurgery, FacTSurgery,
LoRASurgery, AdaptFormer, ClassicalSurgery for full finetuning of some blocks) on the same
blocks, rank and options. decoder_lora has no micro_sam equivalent. qlora needs CUDA and
bitsandbytes.

Usage::

    python benchmarks/peft_methods.py                                  # all presets, 1024x1024
    python benchmarks/peft_methods.py --image-size 256 --presets lora,decoder_lora
    python benchmarks/peft_methods.py --device cuda --steps 5 --json results.json

``--presets`` takes preset names, optionally with a block selection: ``late_ft:11``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from napari_sam_peft.core.peft import PRESETS, PeftSpec, QuantizationUnavailableError, attach, spec_from_preset
from napari_sam_peft.core.sam.architecture import VIT_B, SamArchitecture, build_sam
from napari_sam_peft.core.sam.precision_probe import cpu_model
from napari_sam_peft.core.sam.vit_attention import use_plain_attention

IMPLEMENTATIONS = ("ours", "micro_sam")
DEFAULT_ROWS = (*PRESETS, "late_ft:11")
NUM_OBJECTS = 5
NOT_ON_CPU = "n/a (CUDA only)"


class Unavailable(Exception):
    """This implementation cannot run this preset here: ``cell`` is what the table shows, the message why."""

    def __init__(self, reason: str, cell: str) -> None:
        super().__init__(reason)
        self.cell = cell


# ---------------------------------------------------------------- configuration
def parse_row(row: str) -> tuple[str, str | None]:
    """``"late_ft:11"`` -> ``("late_ft", "11")``; ``"lora"`` -> ``("lora", None)``."""
    preset, _, blocks = row.partition(":")
    if preset not in PRESETS:
        raise SystemExit(f"Unknown preset {preset!r}. Choose among: {', '.join(PRESETS)}.")
    return preset, blocks or None


def row_label(row: str) -> str:
    preset, blocks = parse_row(row)
    if blocks is None:
        return preset
    word = "block" if blocks.isdigit() else "blocks"
    return f"{preset} ({word} {blocks})"


def architecture(image_size: int) -> SamArchitecture:
    if image_size % VIT_B.patch_size:
        raise SystemExit(f"--image-size must be a multiple of {VIT_B.patch_size}, not {image_size}.")
    return VIT_B if image_size == VIT_B.img_size else dataclasses.replace(VIT_B, img_size=image_size)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available.")
    return torch.device(name)


# ---------------------------------------------------------------- building models
def build_ours(spec: PeftSpec, arch: SamArchitecture, device: torch.device) -> nn.Module:
    sam = build_sam(arch, device=device)
    attach(sam, spec)  # raises QuantizationUnavailableError for qlora off CUDA
    return sam


def _freeze_encoder(sam: nn.Module) -> nn.Module:
    sam.requires_grad_(True)
    sam.image_encoder.requires_grad_(False)
    return sam


def micro_sam_config(spec: PeftSpec, depth: int) -> tuple[type[nn.Module], dict[str, Any]] | None:
    """The ``PEFT_Sam`` module and keyword arguments matching ``spec``; None without PEFT_Sam."""
    from micro_sam.models import peft_sam as ms

    options, method = spec.options, spec.method
    if method == "freeze_encoder" or (method == "full_ft" and len(spec.blocks) == depth):
        return None
    if method == "decoder_lora":
        raise Unavailable("no micro_sam equivalent", "—")
    selective = {
        "full_ft": ms.ClassicalSurgery,
        "ln_tune": ms.LayerNormSurgery,
        "bias_tune": ms.BiasSurgery,
        "attn_tune": ms.AttentionSurgery,
    }
    if method in selective:
        return selective[method], {}
    if method == "ssf":
        return ms.SSFSurgery, {"rank": 1}  # rank is required but unused
    if method == "fact":
        return ms.FacTSurgery, {"rank": options.rank, "dropout": options.dropout or None}
    if method == "adaptformer":
        kwargs = {"projection_size": options.projection_size, "dropout": options.dropout or None}
        return ms.AdaptFormer, {"rank": 1, **kwargs}  # rank is unused
    if method == "lora":
        kwargs = {"update_matrices": list(options.targets), "quantize": bool(options.quantize)}
        return ms.LoRASurgery, {"rank": options.rank, **kwargs}
    raise Unavailable(f"no micro_sam equivalent for method {method!r}", "—")


def build_micro_sam(spec: PeftSpec, arch: SamArchitecture, device: torch.device) -> nn.Module:
    from micro_sam.models.peft_sam import PEFT_Sam

    if spec.options.quantizes_encoder and device.type != "cuda":
        raise Unavailable("PEFT_Sam(quantize=True) needs bitsandbytes on CUDA", NOT_ON_CPU)
    config = micro_sam_config(spec, arch.depth)
    # PEFT_Sam creates its modules on the CPU: build there, then move; with segment_anything's own
    # attention, which micro_sam's users run (ours computes global attention in chunks)
    sam = use_plain_attention(build_sam(arch))
    if config is None:
        sam = _freeze_encoder(sam) if spec.method == "freeze_encoder" else sam.requires_grad_(True)
        return sam.to(device)
    module, kwargs = config
    try:
        peft = PEFT_Sam(sam, peft_module=module, attention_layers_to_update=list(spec.blocks), **kwargs)
    except ModuleNotFoundError as err:  # qlora without bitsandbytes
        raise Unavailable(str(err), "n/a") from None
    return peft.sam.to(device)


BUILDERS: dict[str, Callable[[PeftSpec, SamArchitecture, torch.device], nn.Module]] = {
    "ours": build_ours,
    "micro_sam": build_micro_sam,
}


# ---------------------------------------------------------------- one training step
@dataclass(frozen=True)
class Batch:
    image: torch.Tensor
    boxes: torch.Tensor
    target_masks: torch.Tensor
    target_iou: torch.Tensor


def make_batch(arch: SamArchitecture, device: torch.device, generator: torch.Generator) -> Batch:
    size, low_res = arch.img_size, 4 * arch.embedding_size
    corners = torch.rand(NUM_OBJECTS, 2, 2, generator=generator) * size
    boxes = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)
    return Batch(
        image=torch.randn(1, 3, size, size, generator=generator).to(device),
        boxes=boxes.to(device),
        target_masks=(torch.rand(NUM_OBJECTS, 1, low_res, low_res, generator=generator) > 0.5).float().to(device),
        target_iou=torch.rand(NUM_OBJECTS, 1, generator=generator).to(device),
    )


def dice_loss(probabilities: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    dims = tuple(range(1, probabilities.dim()))
    intersection = (probabilities * target).sum(dims)
    union = probabilities.sum(dims) + target.sum(dims)
    return (1 - (2 * intersection + eps) / (union + eps)).mean()


def train_step(sam: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> float:
    image_embeddings = sam.image_encoder(batch.image)
    sparse, dense = sam.prompt_encoder(points=None, boxes=batch.boxes, masks=None)
    low_res_masks, iou_pred = sam.mask_decoder(
        image_embeddings=image_embeddings,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    loss = dice_loss(torch.sigmoid(low_res_masks), batch.target_masks)
    loss = loss + nn.functional.mse_loss(iou_pred, batch.target_iou)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return float(loss.detach())


# ---------------------------------------------------------------- memory
def current_rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB on Linux


def memory_in_use(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else current_rss_bytes()


def memory_peak(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the worker (one subprocess)
def measure(implementation: str, row: str, arch: SamArchitecture, device: torch.device, steps: int) -> dict:
    preset, blocks = parse_row(row)
    spec = spec_from_preset(preset, arch.depth, blocks=blocks)
    torch.manual_seed(0)
    try:
        sam = BUILDERS[implementation](spec, arch, device)
    except Unavailable as err:
        print(f"{implementation} {row}: {err}", file=sys.stderr)
        return {"status": "unavailable", "reason": str(err), "cell": err.cell}
    except QuantizationUnavailableError as err:
        print(f"{implementation} {row}: {err}", file=sys.stderr)
        cell = NOT_ON_CPU if device.type != "cuda" else "n/a"
        return {"status": "unavailable", "reason": str(err), "cell": cell}
    sam.train()
    params = [p for p in sam.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    batch = make_batch(arch, device, torch.Generator().manual_seed(0))
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = memory_in_use(device)
    train_step(sam, optimizer, batch)  # warm-up
    times = []
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        train_step(sam, optimizer, batch)
        synchronize(device)
        times.append(time.perf_counter() - start)
    peak = memory_peak(device)
    return {
        "status": "ok",
        "trainable": sum(p.numel() for p in params),
        "step_s": sum(times) / len(times),
        "peak_bytes": peak,
        "above_model_bytes": max(peak - before, 0),
    }


def run_worker(implementation: str, row: str, args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    result = measure(implementation, row, architecture(args.image_size), device, args.steps)
    print(json.dumps({"implementation": implementation, "row": row, **result}))
    return 0


def spawn_worker(implementation: str, row: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        implementation,
        row,
        "--device",
        args.device,
        "--image-size",
        str(args.image_size),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"implementation": implementation, "row": row, "status": "error", "reason": last}
    return json.loads(lines[-1])


# ---------------------------------------------------------------- report
def machine_description(device: torch.device) -> dict[str, Any]:
    import micro_sam

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores": _cpu_count(),
        "ram_gib": round(_ram_bytes() / 2**30, 1),
        "torch": torch.__version__,
        "micro_sam": micro_sam.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "device": device.type,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


def _ram_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return 0


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f}"


def format_cells(result: dict | None) -> tuple[str, str, str]:
    """(trainable, step seconds, peak memory) cells of one implementation's result."""
    if result is None:
        return "—", "—", "—"
    if result["status"] == "unavailable":
        return (result["cell"],) * 3
    if result["status"] == "error":
        return "error", "error", "error"
    memory = f"{_gib(result['peak_bytes'])} (+{_gib(result['above_model_bytes'])})"
    return f"{result['trainable']:,}", f"{result['step_s']:.2f}", memory


def markdown_table(rows: Iterable[str], results: dict[tuple[str, str], dict], device: torch.device) -> str:
    kind = "GiB allocated" if device.type == "cuda" else "GiB RSS"
    header = (
        "| preset | trainable params (ours) | trainable params (micro_sam) | step s (ours) "
        f"| step s (micro_sam) | peak mem {kind} (ours) | peak mem {kind} (micro_sam) |"
    )
    lines = [header, "|" + "---|" * 7]
    for row in rows:
        ours, theirs = (format_cells(results.get((impl, row))) for impl in IMPLEMENTATIONS)
        cells = [row_label(row), ours[0], theirs[0], ours[1], theirs[1], ours[2], theirs[2]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(results: dict[tuple[str, str], dict]) -> list[str]:
    return [
        f"- {impl} {row_label(row)}: {result['reason']}"
        for (impl, row), result in results.items()
        if result["status"] == "error" or (result["status"] == "unavailable" and result["cell"] != "—")
    ]


# ---------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--image-size", type=int, default=1024, help="multiple of 16 (default 1024)")
    parser.add_argument("--steps", type=int, default=1, help="timed steps after one warm-up step")
    parser.add_argument("--presets", default=",".join(DEFAULT_ROWS), help="comma list, e.g. lora,late_ft:11")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (default 2)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--worker", nargs=2, metavar=("IMPLEMENTATION", "PRESET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(*args.worker, args)
    rows = [r.strip() for r in args.presets.split(",") if r.strip()]
    for row in rows:
        parse_row(row)
    arch, device = architecture(args.image_size), resolve_device(args.device)
    results: dict[tuple[str, str], dict] = {}
    for row in rows:
        for implementation in IMPLEMENTATIONS:
            start = time.perf_counter()
            results[implementation, row] = spawn_worker(implementation, row, args)
            status = results[implementation, row]["status"]
            elapsed, load = time.perf_counter() - start, os.getloadavg()[0]
            print(f"[{elapsed:6.1f} s, load {load:.1f}] {implementation:9} {row}: {status}", file=sys.stderr)
    machine = machine_description(device)
    print(f"SAM vit_b at {arch.img_size}x{arch.img_size}, {args.steps} timed step(s); machine: {machine}")
    print()
    print(markdown_table(rows, results, device))
    for line in notes(results):
        print(line)
    if args.json:
        records = [{"implementation": i, "row": r, **v} for (i, r), v in results.items()]
        payload = {"machine": machine, "image_size": arch.img_size, "steps": args.steps, "results": records}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
