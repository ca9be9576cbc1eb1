"""One training measurement per process, for ``benchmarks/training.py``: ours or micro_sam's, one precision.

- **ours** is ``napari_sam_peft.core.training.loop.train``: it first runs the encoder stages the
  adapter leaves frozen once per image (the one-off "prepare", reported per image), then each
  step runs only the adapted stages, the neck and the mask decoder, with the paper's objective
  (box start and point start, then 8 correction sub-iterations, for 5 objects). The step times
  come from the ``on_event`` timestamps. ``train`` validates at its last step, so it runs
  ``steps + 2`` steps: the first is the warm-up, the last (step plus a validation) counts neither
  in the time nor in the peak memory, which is read at the end of the last timed step.
- **micro_sam** is ``micro_sam.training.SamTrainer`` as ``train_sam`` builds it (a ``TrainableSAM``,
  ``ConvertToSamInputs`` with box distortion 0.025, ``mask_prob=0.5``, 5 objects per batch,
  ``n_sub_iteration=8``, ``AdamW``) running its own epoch loop over ``steps + 1`` batches (the first
  is the warm-up), each a 1x1xHxW float image in 0..255 and its instance labels, as its loaders
  deliver them. ``amp`` runs its mixed-precision epoch (``_train_epoch_mixed``: bfloat16 autocast
  on the CPU, float16 with a gradient scaler on CUDA), which ``train_sam`` uses by default.

micro_sam's ``PEFT_Sam`` works on the ViT's ``blocks``; on TinyViT models (vit_t, LiteMedSAM) its
trainer gets the same trainable parameters as ours for ``late_ft`` (what its ``ClassicalSurgery``
does on a ViT), and ``late_lora`` has no micro_sam counterpart.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.peft import PeftSpec, attach, spec_from_preset
from napari_sam_peft.core.sam.architecture import build_sam
from napari_sam_peft.core.sam.loading import LoadedModel, load_model, model_identity
from napari_sam_peft.core.sam.registry import NAMED_ARCHITECTURES
from napari_sam_peft.core.sam.vit_attention import use_plain_attention
from napari_sam_peft.core.training.estimate import estimate_training
from napari_sam_peft.core.training.loop import TrainingConfig, TrainingHooks, train, training_precisions

# The script's folder is on sys.path when it runs as ``python benchmarks/training.py``.
from peft_methods import Unavailable, architecture, build_micro_sam, memory_in_use, memory_peak, synchronize

MODELS = ("vit_b", "vit_t", "lite_medsam")  # vit_b and vit_t with random weights; LiteMedSAM's real ones
IMAGE_SHAPE = (512, 512)
TRAIN_SEEDS = (0, 1)  # the training images; each step uses one of them
OBJECTS_PER_IMAGE = 5
SUB_ITERATIONS = 8
LR = 1e-5


def load(model_name: str, device: torch.device, image_size: int) -> LoadedModel:
    """The model of a row: vit_b at ``image_size``, vit_t at 1024 (random weights), LiteMedSAM's own."""
    if model_name == "lite_medsam":
        return load_model("lite_medsam", device=device)
    arch = architecture(image_size) if model_name == "vit_b" else NAMED_ARCHITECTURES[model_name]
    torch.manual_seed(0)
    sam = build_sam(arch, device=device)
    return LoadedModel(sam=sam, identity=model_identity(sam, f"{model_name}_random"), architecture=arch, source="")


def spec_of(row: str, depth: int) -> PeftSpec:
    """``"late_lora:6-11"`` -> the preset on those blocks; ``"late_ft:last 1"`` -> the last block."""
    preset, _, blocks = row.partition(":")
    return spec_from_preset(preset, depth, blocks=blocks or None)


def training_samples() -> list[tuple[np.ndarray, np.ndarray]]:
    samples = (make_sample("cells", seed=seed, shape=IMAGE_SHAPE) for seed in TRAIN_SEEDS)
    return [(s.image, s.labels) for s in samples]


def start_memory_window(device: torch.device) -> int:
    """Reset the CUDA peak and return the memory in use now (the "model" part of the peak)."""
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return memory_in_use(device)


def memory_fields(peak: int, before: int) -> dict:
    return {"peak_bytes": peak, "peak_gib": peak / 2**30, "above_model_bytes": max(peak - before, 0)}


def measure_ours(model: LoadedModel, row: str, device: torch.device, steps: int, precision: str) -> dict:
    """Our training loop on ``row`` in ``precision`` (auto or a name): step time, prepare time, peak memory."""
    spec = spec_of(row, model.architecture.depth)
    samples = training_samples()
    config = TrainingConfig(
        steps=steps + 2,  # warm-up, timed steps, and the last step that also validates
        objects_per_image=OBJECTS_PER_IMAGE,
        sub_iterations=SUB_ITERATIONS,
        validate_every=10**6,
        lr=LR,
        precision=precision,
    )
    marks: list[float] = []
    peaks: list[int] = []

    def mark(_progress: object) -> None:
        synchronize(device)
        marks.append(time.perf_counter())
        peaks.append(memory_peak(device))

    chosen = training_precisions(model, spec, precision)[0].name  # probed (or read) before the timing starts
    before = start_memory_window(device)
    start = time.perf_counter()
    train(model, spec, samples, (), config, TrainingHooks(on_event=mark, on_prepared=mark))
    # Index 0 is "prepared", index k the end of step k: step 1 is the warm-up, the last step also
    # validates, so neither its time nor its memory counts.
    step_times = np.diff(marks)[1 : steps + 1]
    estimate = estimate_training(spec, model.architecture, device.type, objects_per_image=OBJECTS_PER_IMAGE)
    return {
        "status": "ok",
        "precision": chosen,
        "trainable": estimate.trainable_params,
        "step_s": float(step_times.mean()),
        "prepare_s_per_image": (marks[0] - start) / len(samples),
        **memory_fields(peaks[steps + 1], before),
        "estimate_step_s": estimate.seconds_per_step,
        "estimate_memory_bytes": estimate.memory_bytes,
    }


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


def micro_sam_model(model_name: str, row: str, device: torch.device, image_size: int) -> torch.nn.Module:
    """SAM prepared the way micro_sam's ``train_sam`` would for ``row`` (see the module docstring)."""
    if model_name == "vit_b":
        arch = architecture(image_size)
        return build_micro_sam(spec_of(row, arch.depth), arch, device)
    model = load(model_name, device, image_size)
    use_plain_attention(model.sam)  # a no-op on TinyViT, whose attention is windowed
    spec = spec_of(row, model.architecture.depth)
    if spec.method == "freeze_encoder":
        model.sam.image_encoder.requires_grad_(False)
        return model.sam
    if spec.method == "full_ft":
        attach(model.sam, spec)  # marks the selected blocks trainable, as ClassicalSurgery does on a ViT
        return model.sam
    raise Unavailable(f"micro_sam's PEFT_Sam needs a ViT's blocks: no {spec.method} on {model_name}", "n/a")


def measure_micro_sam(
    model_name: str, row: str, device: torch.device, steps: int, amp: bool, image_size: int
) -> dict:
    """micro_sam's ``SamTrainer`` epoch loop on ``row``, with its autocast (``amp``) or in float32."""
    from micro_sam.training import ConvertToSamInputs, SamTrainer
    from micro_sam.training.trainable_sam import TrainableSAM

    torch.manual_seed(0)
    np.random.seed(0)  # micro_sam samples objects and prompts with numpy's and Python's global generators
    random.seed(0)
    sam = micro_sam_model(model_name, row, device, image_size)
    trainable = TrainableSAM(sam)
    samples = [micro_sam_batch(image, labels) for image, labels in training_samples()]
    loader = TimedBatches([samples[i % len(samples)] for i in range(steps + 1)], device)
    trainer = SamTrainer(
        name="benchmark",
        train_loader=loader,
        val_loader=loader,
        model=trainable,
        optimizer=torch.optim.AdamW(trainable.parameters(), lr=LR),
        device=device,
        logger=None,
        mixed_precision=amp,
        convert_inputs=ConvertToSamInputs(transform=trainable.transform, box_distortion_factor=0.025),
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
    precision = ("bf16" if device.type == "cpu" else "fp16") if amp else "fp32"
    return {
        "status": "ok",
        "precision": precision,
        "trainable": sum(p.numel() for p in trainable.parameters() if p.requires_grad),
        "step_s": float(step_times.mean()),
        **memory_fields(peak, before),
    }
