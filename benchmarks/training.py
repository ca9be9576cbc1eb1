"""Training step and adapter reload on SAM vit_b: our training and session next to micro_sam's.

Part 1, **training**: for ``freeze_encoder``, ``late_ft`` on block 11 and ``late_lora`` on
blocks 6-11, the cost of one step of each project's real training code, on the same images:

- **ours** is ``napari_sam_peft.core.training.loop.train``: it first runs the encoder stages the
  adapter leaves frozen once per image (the one-off "prepare", reported per image), then
  each step runs only the adapted blocks, the neck and the mask decoder, with the paper's
  objective (box start and point start, then 8 correction sub-iterations, for 5 objects).
  The step times come from the ``on_event`` timestamps. ``train`` validates at its last
  step, so it runs ``steps + 2`` steps: the first is the warm-up, the last (step plus a
  validation of up to 64 objects, 16 at a time) counts neither in the time nor in the peak
  memory, which is read at the end of the last timed step.
- **micro_sam** is ``micro_sam.training.SamTrainer`` as ``train_sam`` builds it (a
  ``TrainableSAM``, ``ConvertToSamInputs`` with box distortion 0.025, ``mask_prob=0.5``,
  5 objects per batch, ``n_sub_iteration=8``, ``AdamW(lr=1e-5)`` over the model's
  parameters) running its own epoch loop (``_train_epoch``: zero_grad, the interactive
  iteration, backward, optimizer step) over ``steps + 1`` batches: the first is the
  warm-up. Each batch is what micro_sam's loaders deliver: a 1x1xHxW float image in 0..255
  and 1x1xHxW instance labels. Its model is built as in ``benchmarks/peft_methods.py``:
  SAM with a frozen image encoder, ``PEFT_Sam`` with ``ClassicalSurgery`` (which makes the
  chosen blocks fully trainable, everything else in the encoder frozen) or ``LoRASurgery``
  with our preset's rank and targets. micro_sam's ``train_sam`` trains with autocast
  (bfloat16 on the CPU, float16 on CUDA); by default both sides run in float32 here, and
  ``--micro-sam-amp`` measures micro_sam with its autocast.

The two objectives differ in detail: micro_sam runs the whole image encoder (with gradients
where it trains) at every step, starts each step from points *or* boxes (alternating, so
keep ``--steps`` even) and makes 8 decoder passes, with losses at the image's own size;
ours starts from both and makes 10, with losses at the mask decoder's resolution (1/4 of
SAM's input frame).

Peak memory is the peak RSS of the worker process on the CPU (``ru_maxrss``) and
``torch.cuda.max_memory_allocated`` on CUDA, shown as ``total (+above model)``: "above
model" is the peak minus the memory in use once the model was built, i.e. what training
adds (kept stage inputs, activations, gradients, AdamW state). Next to our measured numbers
stands our own estimate (``core.estimate.estimate_training``), the one the Finetune widget
shows before a run.

Part 2, **reload**: after training a new adapter, how long until the user sees a mask
from it on the current image (512x512):

- **ours**: ``AnnotatorSession.set_adapter(B)`` (read, verify and attach the file in place)
  + ``compute_embeddings`` (which runs only the adapted blocks from the kept block-k input)
  + one box prompt. The session embedded the image with the base model (``stage_hint`` set
  to the first adapted stage, as the Finetune widget does) and with adapter A first.
- **full re-embedding**: what micro_sam's annotator has to do, since it cannot swap
  weights in a loaded model: ``get_sam_model`` on a merged checkpoint of base + B (written
  with ``Adapter.merged_state_dict``), ``precompute_image_embeddings`` and one
  ``segment_from_box``. For scale, the table also gives our session's full encoder run
  (a new session with B attached and no kept stage input).

Every (implementation, row) of part 1 and every row of part 2 runs in its own subprocess,
so each peak memory figure is its own. The models have random weights (cost depends on
the architecture, not on the weights) and nothing is downloaded. On the CPU, give
``--threads`` no more than the idle cores: when another process holds one of torch's
cores, the many small operations of the mask decoder slow down many times over.

Usage::

    python benchmarks/training.py                                  # the docs tables, 1024x1024
    python benchmarks/training.py --image-size 256 --steps 1       # a quick check
    python benchmarks/training.py --device cuda --only training --json training.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.peft import Adapter, PeftSpec, attach, spec_from_preset
from napari_sam_peft.core.sam.architecture import SamArchitecture, build_sam
from napari_sam_peft.core.sam.loading import LoadedModel, model_identity
from napari_sam_peft.core.training.estimate import estimate_training, first_trained_stage
from napari_sam_peft.core.training.loop import TrainingConfig, TrainingHooks, train
from napari_sam_peft.session import AnnotatorSession

# The script's folder is on sys.path when it runs as ``python benchmarks/training.py``.
from peft_methods import (
    architecture,
    build_micro_sam,
    machine_description,
    memory_in_use,
    memory_peak,
    parse_row,
    resolve_device,
    row_label,
    synchronize,
)

TRAINING_ROWS = ("freeze_encoder", "late_ft:11", "late_lora:6-11")
RELOAD_ROWS = ("late_lora:6-11", "late_ft:11")
IMPLEMENTATIONS = ("ours", "micro_sam")
IMAGE_SHAPE = (512, 512)
TRAIN_SEEDS = (0, 1)  # the training images; each step uses one of them
RELOAD_SEED = 100  # the image shown in the annotator when the new adapter arrives
OBJECTS_PER_IMAGE = 5
SUB_ITERATIONS = 8
LR = 1e-5


# ---------------------------------------------------------------- shared setup
def base_model(arch: SamArchitecture, device: torch.device) -> LoadedModel:
    torch.manual_seed(0)
    sam = build_sam(arch, device=device)
    identity = model_identity(sam, "vit_b_random")
    return LoadedModel(sam=sam, identity=identity, architecture=arch, source="benchmark")


def training_samples() -> list[tuple[np.ndarray, np.ndarray]]:
    samples = (make_sample("cells", seed=seed, shape=IMAGE_SHAPE) for seed in TRAIN_SEEDS)
    return [(s.image, s.labels) for s in samples]


def spec_of(row: str, arch: SamArchitecture) -> PeftSpec:
    preset, blocks = parse_row(row)
    return spec_from_preset(preset, arch.depth, blocks=blocks)


def start_memory_window(device: torch.device) -> int:
    """Reset the CUDA peak and return the memory in use now (the "model" part of the peak)."""
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return memory_in_use(device)


def memory_fields(peak: int, before: int) -> dict:
    return {"peak_bytes": peak, "above_model_bytes": max(peak - before, 0)}


# ---------------------------------------------------------------- part 1: ours
def measure_ours(row: str, arch: SamArchitecture, device: torch.device, steps: int) -> dict:
    spec = spec_of(row, arch)
    model = base_model(arch, device)
    samples = training_samples()
    config = TrainingConfig(
        steps=steps + 2,  # warm-up, timed steps, and the last step that also validates
        objects_per_image=OBJECTS_PER_IMAGE,
        sub_iterations=SUB_ITERATIONS,
        validate_every=10**6,
        lr=LR,
        precision="fp32",  # the tables compare float32 with float32 (auto would take bf16 where it is native)
    )
    marks: list[float] = []
    peaks: list[int] = []

    def mark(_progress: object) -> None:
        synchronize(device)
        marks.append(time.perf_counter())
        peaks.append(memory_peak(device))

    before = start_memory_window(device)
    start = time.perf_counter()
    train(model, spec, samples, (), config, TrainingHooks(on_event=mark, on_prepared=mark))
    # Index 0 is "prepared", index k the end of step k: step 1 is the warm-up, the last step also
    # validates (up to 64 objects, 16 at a time), so neither its time nor its memory counts.
    step_times = np.diff(marks)[1 : steps + 1]
    estimate = estimate_training(spec, arch, device.type, objects_per_image=OBJECTS_PER_IMAGE)
    return {
        "status": "ok",
        "trainable": estimate.trainable_params,
        "step_s": float(step_times.mean()),
        "prepare_s_per_image": (marks[0] - start) / len(samples),
        **memory_fields(peaks[steps + 1], before),
        "estimate_step_s": estimate.seconds_per_step,
        "estimate_memory_bytes": estimate.memory_bytes,
    }


# ---------------------------------------------------------------- part 1: micro_sam
class TimedBatches:
    """A list of batches as a data loader that notes the time each batch is asked for.

    micro_sam's epoch loop asks for the next batch right after finishing a step, so the
    differences between these times (and the end of the loop) are its step times.
    """

    def __init__(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> None:
        self.batches = batches
        self.device = device
        self.marks: list[float] = []

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.batches:
            synchronize(self.device)
            self.marks.append(time.perf_counter())
            yield batch


class _NoProgress:
    """The progress bar micro_sam's epoch loop updates."""

    def update(self, n: int) -> None:
        pass


def micro_sam_batch(image: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """One sample as micro_sam's loaders deliver it: float image in 0..255 and labels, both 1x1xHxW."""
    return (
        torch.from_numpy(image.astype(np.float32))[None, None],
        torch.from_numpy(labels.astype(np.float32))[None, None],
    )


def measure_micro_sam(row: str, arch: SamArchitecture, device: torch.device, steps: int, amp: bool) -> dict:
    from micro_sam.training import ConvertToSamInputs, SamTrainer
    from micro_sam.training.trainable_sam import TrainableSAM

    spec = spec_of(row, arch)
    torch.manual_seed(0)
    np.random.seed(0)  # micro_sam samples objects and prompts with numpy's and Python's global generators
    random.seed(0)
    model = TrainableSAM(build_micro_sam(spec, arch, device))
    samples = [micro_sam_batch(image, labels) for image, labels in training_samples()]
    loader = TimedBatches([samples[i % len(samples)] for i in range(steps + 1)], device)
    trainer = SamTrainer(
        name="benchmark",
        train_loader=loader,
        val_loader=loader,
        model=model,
        optimizer=torch.optim.AdamW(model.parameters(), lr=LR),
        device=device,
        logger=None,
        mixed_precision=amp,
        convert_inputs=ConvertToSamInputs(transform=model.transform, box_distortion_factor=0.025),
        n_objects_per_batch=OBJECTS_PER_IMAGE,
        n_sub_iteration=SUB_ITERATIONS,
        mask_prob=0.5,
    )
    # What fit() -> _initialize() sets and the epoch loop reads (without its checkpoint folder in the cwd).
    trainer.max_iteration, trainer.logger = steps + 1, None
    run_epoch = trainer._train_epoch_mixed if amp else trainer._train_epoch
    before = start_memory_window(device)
    run_epoch(_NoProgress())
    synchronize(device)
    peak = memory_peak(device)
    step_times = np.diff([*loader.marks, time.perf_counter()])[1:]  # the first step is the warm-up
    return {
        "status": "ok",
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "step_s": float(step_times.mean()),
        **memory_fields(peak, before),
    }


# ---------------------------------------------------------------- part 2: reload
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


def measure_reload(row: str, arch: SamArchitecture, device: torch.device) -> dict:
    from micro_sam.prompt_based_segmentation import segment_from_box
    from micro_sam.util import get_sam_model, precompute_image_embeddings

    spec = spec_of(row, arch)
    model = base_model(arch, device)
    sample = make_sample("cells", seed=RELOAD_SEED, shape=IMAGE_SHAPE)
    image, box = sample.image, object_box(sample.labels)
    prompts = [ObjectPrompts(box=box)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        adapter_a = write_adapter(model, spec, folder / "a.safetensors", seed=1)
        adapter_b = write_adapter(model, spec, folder / "b.safetensors", seed=2)

        # Ours: the base embedding keeps the block-k input; adapter A warms up the reload path.
        session = AnnotatorSession(cache=EmbeddingCache(folder / "cache"))
        session.set_model(model)
        session.stage_hint = first_trained_stage(spec, arch)
        session.compute_embeddings(image)
        session.set_adapter(adapter_a)
        session.segment(session.compute_embeddings(image)[1], prompts)
        reembedded = session.reembedded_from_stage
        start = time.perf_counter()
        session.set_adapter(adapter_b)
        attached = time.perf_counter()
        _, embeddings = session.compute_embeddings(image)
        embedded = time.perf_counter()
        session.segment(embeddings, prompts)
        done = time.perf_counter()
        if session.reembedded_from_stage != reembedded + 1:
            raise RuntimeError("The session re-embedded with the whole encoder, not from the kept stage input.")
        session.set_adapter(None)

        # Ours without a kept stage input: a new session runs the whole encoder with B attached.
        fresh = AnnotatorSession(cache=EmbeddingCache(folder / "fresh"))
        fresh.set_model(model)
        fresh.set_adapter(adapter_b)
        full_start = time.perf_counter()
        fresh.compute_embeddings(image)
        full_embed = time.perf_counter() - full_start
        fresh.set_adapter(None)

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
        "first_stage": session.stage_hint,
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


# ---------------------------------------------------------------- workers
def run_worker(kind: str, row: str, args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    arch = architecture(args.image_size)
    if kind == "ours":
        result = measure_ours(row, arch, device, args.steps)
    elif kind == "micro_sam":
        result = measure_micro_sam(row, arch, device, args.steps, args.micro_sam_amp)
    else:
        result = measure_reload(row, arch, device)
    print(json.dumps({"kind": kind, "row": row, **result}))
    return 0


def spawn_worker(kind: str, row: str, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
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
    if args.micro_sam_amp:
        command.append("--micro-sam-amp")
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        result = {"kind": kind, "row": row, "status": "error", "reason": last}
    else:
        result = json.loads(lines[-1])
    elapsed, load = time.perf_counter() - start, os.getloadavg()[0]
    print(f"[{elapsed:6.1f} s, load {load:.1f}] {kind:9} {row}: {result['status']}", file=sys.stderr)
    return result


# ---------------------------------------------------------------- report
def _gib(value: float) -> str:
    return f"{value / 2**30:.2f}"


def _cell(result: dict, show: Callable[[dict], str]) -> str:
    return show(result) if result["status"] == "ok" else "error"


def _memory(result: dict) -> str:
    return f"{_gib(result['peak_bytes'])} (+{_gib(result['above_model_bytes'])})"


def training_table(results: dict[tuple[str, str], dict], device: torch.device) -> str:
    kind = "GiB allocated" if device.type == "cuda" else "GiB RSS"
    lines = [
        "| row | step s (ours) | step s (micro_sam) | step s (our estimate) | prepare s per image (ours) "
        f"| peak mem {kind} (ours) | peak mem {kind} (micro_sam) | memory GiB (our estimate) |",
        "|" + "---|" * 8,
    ]
    for row in TRAINING_ROWS:
        ours, theirs = results["ours", row], results["micro_sam", row]
        cells = [
            row_label(row),
            _cell(ours, lambda r: f"{r['step_s']:.2f}"),
            _cell(theirs, lambda r: f"{r['step_s']:.2f}"),
            _cell(ours, lambda r: f"{r['estimate_step_s']:.2f}"),
            _cell(ours, lambda r: f"{r['prepare_s_per_image']:.2f}"),
            _cell(ours, _memory),
            _cell(theirs, _memory),
            _cell(ours, lambda r: _gib(r["estimate_memory_bytes"])),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reload_table(results: dict[str, dict]) -> str:
    lines = [
        "| row | reload + re-embed + prompt s (ours) | of which re-embed | full re-embed s (ours, no kept input) "
        "| full reload path s (micro_sam) | of which model load |",
        "|" + "---|" * 6,
    ]
    for row in RELOAD_ROWS:
        keys = ("ours_total_s", "ours_reembed_s", "ours_full_embed_s", "micro_sam_total_s", "micro_sam_load_s")
        cells = [_cell(results[row], lambda r, key=key: f"{r[key]:.2f}") for key in keys]
        lines.append("| " + " | ".join([row_label(row), *cells]) + " |")
    return "\n".join(lines)


def error_notes(records: list[dict]) -> list[str]:
    return [f"- {r['kind']} {row_label(r['row'])}: {r['reason']}" for r in records if r["status"] == "error"]


# ---------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--image-size", type=int, default=1024, help="SAM's input size, a multiple of 16")
    parser.add_argument(
        "--steps",
        type=int,
        default=2,
        help="timed steps after one warm-up step (default 2; even, as micro_sam alternates point and box)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (default 2)")
    parser.add_argument("--only", choices=("training", "reload", "all"), default="all")
    parser.add_argument(
        "--micro-sam-amp", action="store_true", help="train micro_sam with autocast, as its train_sam does"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "ROW"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(*args.worker, args)
    arch, device = architecture(args.image_size), resolve_device(args.device)
    training_rows = TRAINING_ROWS if args.only in ("training", "all") else ()
    reload_rows = RELOAD_ROWS if args.only in ("reload", "all") else ()
    training = {(kind, row): spawn_worker(kind, row, args) for row in training_rows for kind in IMPLEMENTATIONS}
    reload = {row: spawn_worker("reload", row, args) for row in reload_rows}
    machine = machine_description(device)
    height, width = IMAGE_SHAPE
    precision = "autocast (as train_sam)" if args.micro_sam_amp else "float32 (as ours)"
    print(
        f"SAM vit_b (random weights) at {arch.img_size}x{arch.img_size}; 'cells' sample images {height}x{width}."
    )
    threads = f", {args.threads} torch thread(s)" if device.type == "cpu" else ""
    print(f"Machine: {machine}{threads}")
    if training:
        print()
        print(
            f"Training: {len(TRAIN_SEEDS)} images, {OBJECTS_PER_IMAGE} objects per image, {SUB_ITERATIONS} "
            f"sub-iterations, AdamW lr {LR:g}; mean of {args.steps} timed step(s) after 1 warm-up step; "
            f"micro_sam in {precision}."
        )
        print()
        print(training_table(training, device))
    if reload:
        print()
        print("Adapter reload: time to the first mask from a new adapter on an image already embedded.")
        print()
        print(reload_table(reload))
    records = [*training.values(), *reload.values()]
    for line in error_notes(records):
        print(line)
    if args.json:
        payload = {
            "machine": machine,
            "image_size": arch.img_size,
            "steps": args.steps,
            "micro_sam_amp": args.micro_sam_amp,
            "results": records,
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
