"""One PEFT training step of a SAM 2.1 model: ours against micro_sam dev's ``PEFT_Sam2`` training, same run.

Same model (``hvit_t``, SAM 2.1 Hiera tiny at its input size 1024, random weights from seed 0: time and
memory do not depend on the values), same PEFT (LoRA of the preset's rank and matrices on the preset's
blocks; the trainable parameters of both sides are printed, and equal), same data (one generated
512 x 512 ``cells`` image, seed 1), float32 on the CPU (micro_sam dev's ``training_autocast_dtype``
trains in float32 off CUDA). Each side runs in its own process (so its peak memory is its own): one
warm-up step, then the median of ``--steps``; memory is the process's peak resident set minus the
resident set once the model, its PEFT and the optimizer are built.

**ours**: the step our training loop runs (``core.training.loop._Stepper.step`` on its ``_Objective``
module, set up as ``loop.train`` does: ``attach``, ``StageInputs``, AdamW at lr 1e-5), with the paper's
recipe (``recipe.PAPER``): 8 objects, each from a box start (single mask) and a point start (best of 3
masks), then 8 correction passes (one new positive and negative point each) for half the objects from
the box start and half from the point start: 18 decoder calls, 10 decoder passes per object. Loss:
Dice + BCE + IoU MSE at the decoder's 1/4 resolution, each pass backpropagated at once, the encoder's
share once at the end; AdamW step.

**micro_sam**: micro_sam dev's ``Sam2Trainer`` iteration (``micro_sam/v2/training/sam2_trainer.py``,
branch ``dev``, commit 19153f2), reproduced without torch_em's loaders and trainer:

- the model as ``get_sam2_train_model`` builds it: Meta's ``training.model.sam2.SAM2Train`` from the
  SAM 2.1 configuration with its overrides (``apply_postprocessing=False``), wrapped in the vendored
  ``PEFT_Sam2`` (tests/reference) with ``LoRASurgery`` on the same blocks, rank and matrices as our
  preset; its memory parts frozen with ``get_sam2_train_model``'s ``freeze`` (a 2D step does not run
  them; the same configuration as tests/core/peft/test_hiera_counts.py);
- ``ConvertToSam2VideoBatch`` reproduced per step: the image (/255) broadcast to 3 channels, resized
  along its longest side (bilinear, antialiased) to the model's input size and padded, ImageNet
  normalised; 8 objects drawn at random (``max_num_objects=8``), masks resized (nearest) and padded;
- ``SAM2Train.forward`` itself, Meta's code (a 1-frame video: forced point input, a box with p=0.5 else
  one point from the object, 3 masks for a single point): ``forward_image`` with gradients through the
  LoRA layers, the prompt encoder and ``sam_mask_decoder`` with the high-resolution features, then
  ``num_correction_pt_per_frame`` = 9 correction clicks, each decoder call also fed the previous
  logits as a mask prompt (10 decoder calls on 8 objects: 10 passes per object, as ours), then the
  memory encoder on the final mask, as ``track_step`` runs it;
- micro_sam dev's ``CustomSAM2Loss`` with its defaults, reproduced: best-candidate Dice plus IoU MSE
  over all candidates, on the masks upsampled to the input size, summed over the 10 steps, per object;
- one backward pass and AdamW (``_build_optimizer``: lr 1e-5, weight decay 0.1, none on biases and
  LayerNorms).

micro_sam 2 is not released, so ``micro_sam.v2`` is not installed: its batch conversion and loss are
reproduced here; ``SAM2Train`` is imported from Meta's ``training`` package, whose module imports
``tensordict`` only for a batch class this script does not use (a stand-in is registered where it is
not installed). The batch is a plain object with the four fields ``SAM2Train.forward`` reads.

Usage::

    python benchmarks/sam2_peft_step.py --json out.json     # hvit_t, 3 steps, lora
    python benchmarks/sam2_peft_step.py --quick             # tiny_hiera, 1 step (a check that it runs)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from child_run import measured_in_child, write_rows

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("ours", "micro_sam")
OBJECTS = 8  # recipe.PAPER.objects_per_image
CORRECTIONS = 8  # recipe.PAPER.sub_iterations
#: micro_sam's correction clicks: one start + 9 corrections = our 2 starts + 8 corrections per object
MICRO_SAM_CORRECTIONS = CORRECTIONS + 1
#: what a 2D step of SAM2Train runs; the rest is frozen (get_sam2_train_model's ``freeze``)
RUN_IN_2D = ("image_encoder", "sam_prompt_encoder", "sam_mask_decoder")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _peak_rss_mib() -> float:
    """This process's peak resident set so far, in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sample() -> Any:
    """The benchmark's one image and its labels."""
    from napari_sam_peft.core.data.sample_data import make_sample

    return make_sample("cells", seed=1, shape=(512, 512))


def _ours(architecture: Any, preset: str) -> tuple[Callable[[], None], int]:
    """Our model with ``preset`` attached and our loop's step on the sample; the trainable count."""
    import numpy as np
    import torch

    from napari_sam_peft.core.annotation.stage_inputs import StageInputs
    from napari_sam_peft.core.peft import attach, frozen_prefix_stages, spec_from_preset
    from napari_sam_peft.core.sam.architecture import build_sam
    from napari_sam_peft.core.sam.precision import Precision
    from napari_sam_peft.core.training.loop import TrainingConfig, _Objective, _Stepper

    sample = _sample()
    torch.manual_seed(0)
    sam = build_sam(architecture, device="cpu")
    handle = attach(sam, spec_from_preset(preset, architecture.depth))
    sam.eval()
    inputs = StageInputs(sam, [sample.image], frozen_prefix_stages(sam))
    config = TrainingConfig(lr=1e-5, objects_per_image=OBJECTS, sub_iterations=CORRECTIONS, precision="fp32")
    module = _Objective(sam, inputs, config)
    params = list(handle.trainable_parameters())
    stepper = _Stepper(torch.optim.AdamW(params, lr=config.lr), Precision("fp32", "cpu"), world=1)
    rng = np.random.default_rng(0)

    def step() -> None:
        """One step of our training loop."""
        module.train()
        stepper.step(module, 0, sample.labels, rng)

    return step, sum(p.numel() for p in params)


def _sam2_train_class() -> type:
    """Meta's ``SAM2Train``, importable without ``tensordict`` (its module imports it for a batch class), and
    not shadowed by ``benchmarks/training.py``."""
    try:
        import tensordict  # noqa: F401
    except ImportError:
        import dataclasses
        import types

        stand_in = types.ModuleType("tensordict")
        stand_in.tensorclass = dataclasses.dataclass  # type: ignore[attr-defined]
        sys.modules["tensordict"] = stand_in
    here = Path(__file__).resolve().parent  # on sys.path, with its own training.py
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    from training.model.sam2 import SAM2Train

    return SAM2Train


def _micro_sam_model(architecture: Any, preset: str) -> Any:
    """SAM2Train as micro_sam dev's ``get_sam2_train_model`` builds it, with ``PEFT_Sam2`` and ``freeze``."""
    import torch
    from sam2.build_sam import build_sam2

    from napari_sam_peft.core.peft import spec_from_preset
    from napari_sam_peft.core.sam.sam2_model import BASE_CONFIG, config_overrides

    sys.path.insert(0, str(ROOT))
    from tests.reference import micro_sam_dev_peft_sam2 as ref

    _sam2_train_class()
    train_overrides = [  # get_sam2_train_model's, with train_sam2's defaults
        "++model._target_=training.model.sam2.SAM2Train",
        "++model.prob_to_use_pt_input_for_train=0.5",
        "++model.prob_to_use_box_input_for_train=0.5",
        "++model.num_frames_to_correct_for_train=1",
        "++model.rand_frames_to_correct_for_train=True",
        "++model.prob_to_sample_from_gt_for_train=0.1",
        "++model.add_all_frames_to_correct_as_cond=True",
        f"++model.num_correction_pt_per_frame={MICRO_SAM_CORRECTIONS}",
        "++model.num_init_cond_frames_for_train=1",
    ]
    overrides = config_overrides(architecture) + train_overrides
    torch.manual_seed(0)
    model = build_sam2(BASE_CONFIG, None, "cpu", "train", overrides, apply_postprocessing=False)
    spec = spec_from_preset(preset, architecture.depth)
    options = spec.options.to_dict()
    blocks = list(spec.blocks)
    model = ref.PEFT_Sam2(
        model, options["rank"], attention_layers_to_update=blocks, update_matrices=options["targets"]
    ).sam
    freeze = [name for name, _ in model.named_children() if name not in RUN_IN_2D]
    freeze += [name for name, _ in model.named_parameters(recurse=False)]
    for name, param in model.named_parameters():
        if any(name.startswith(component) for component in freeze):
            param.requires_grad = False
    return model


def _micro_sam_optimizer(model: Any) -> Any:
    """micro_sam dev's ``_build_optimizer(model, lr=1e-5)``: weight decay 0.1 but on biases and LayerNorms."""
    import torch

    no_wd = {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in model.named_modules()
        if isinstance(module, torch.nn.LayerNorm)
        for name, _ in module.named_parameters(recurse=False)
    }
    no_wd |= {name for name, _ in model.named_parameters() if "bias" in name}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if n not in no_wd]
    no_decay = [p for n, p in trainable if n in no_wd]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=1e-5)


def _resize_and_pad(x: Any, size: int, mode: str) -> Any:
    """micro_sam dev's ``resize_longest_side_and_pad_tensor``: longest side to ``size``, zero padding."""
    import torch.nn.functional as F

    height, width = x.shape[-2:]
    scale = size / max(height, width)
    new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
    kwargs = {"align_corners": False, "antialias": True} if mode == "bilinear" else {}
    x = F.interpolate(x, size=(new_h, new_w), mode=mode, **kwargs)
    return F.pad(x, (0, size - new_w, 0, size - new_h))


def _to_sam2_batch(image: Any, labels: Any, size: int) -> SimpleNamespace:
    """micro_sam dev's ``ConvertToSam2VideoBatch`` for one 2D image (``max_num_objects=OBJECTS``)."""
    import torch

    x = (torch.from_numpy(image).float() / 255)[None, None].expand(-1, 3, -1, -1)
    x = _resize_and_pad(x, size, "bilinear")
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    y = torch.from_numpy(labels.astype("int64"))
    ids = torch.unique(y)
    ids = ids[ids > 0]
    ids = ids[torch.randperm(len(ids))[:OBJECTS]]
    masks = _resize_and_pad((y[None] == ids.view(-1, 1, 1)).float()[:, None], size, "nearest")
    return SimpleNamespace(  # the fields SAM2Train.forward reads of a BatchedVideoDatapoint
        flat_img_batch=x,
        num_frames=1,
        masks=masks[:, 0].bool()[None],
        flat_obj_to_img_idx=torch.zeros(1, len(ids), dtype=torch.long),
    )


def _custom_sam2_loss(outputs: list[dict], masks: Any) -> Any:
    """micro_sam dev's ``CustomSAM2Loss()`` (defaults: Dice + IoU MSE, no focal or object-score term)."""
    import torch
    import torch.nn.functional as F

    total = torch.zeros(())
    num_objects = max(float(masks.shape[1]), 1.0)
    for frame, frame_masks in zip(outputs, masks, strict=True):
        target_masks = frame_masks.unsqueeze(1).float()
        present = (target_masks[:, 0].flatten(1) > 0).any(-1).float()
        steps = zip(frame["multistep_pred_multimasks_high_res"], frame["multistep_pred_ious"], strict=True)
        for logits, pred_ious in steps:
            target = target_masks.expand_as(logits).flatten(2)
            probs = logits.sigmoid().flatten(2)
            dice = 1 - (2 * (probs * target).sum(-1) + 1) / (probs.sum(-1) + target.sum(-1) + 1)
            hard, truth = logits.flatten(2) > 0, target > 0
            true_iou = (hard & truth).sum(-1).float() / (hard | truth).sum(-1).float().clamp(min=1.0)
            iou = F.mse_loss(pred_ious, true_iou, reduction="none")
            best = dice.argmin(dim=-1)
            rows = torch.arange(dice.shape[0])
            total = total + (dice[rows, best] * present).sum() / num_objects
            total = total + (iou.mean(-1) * present).sum() / num_objects
    return total


def _micro_sam(architecture: Any, preset: str) -> tuple[Callable[[], None], int]:
    """micro_sam dev's SAM 2 training model and one ``Sam2Trainer`` iteration; the trainable count."""
    import torch

    sample = _sample()
    model = _micro_sam_model(architecture, preset)
    optimizer = _micro_sam_optimizer(model)
    torch.manual_seed(0)  # ConvertToSam2VideoBatch's object draw

    def step() -> None:
        """One iteration of micro_sam dev's ``Sam2Trainer._train_epoch_impl``."""
        model.train()
        optimizer.zero_grad()
        batch = _to_sam2_batch(sample.image, sample.labels, model.image_size)
        loss = _custom_sam2_loss(model(batch), batch.masks)
        loss.backward()
        optimizer.step()

    return step, sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure(side: str, model: str, preset: str, steps: int, threads: int) -> dict:
    """Time ``steps`` training steps of ``side`` after one warm-up step, in this process."""
    import psutil
    import torch

    from napari_sam_peft.core.sam.architecture import NAMED_ARCHITECTURES

    if threads > 0:
        torch.set_num_threads(threads)
    architecture = NAMED_ARCHITECTURES[model]
    step, trainable = (_ours if side == "ours" else _micro_sam)(architecture, preset)
    loaded_rss = psutil.Process().memory_info().rss / 2**20
    step()  # warm-up
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    calls = 2 + 2 * CORRECTIONS if side == "ours" else 1 + MICRO_SAM_CORRECTIONS
    return {
        "side": side,
        "model": model,
        "input": architecture.img_size,
        "preset": preset,
        "objects": OBJECTS,
        "decoder_calls": calls,
        "passes_per_object": 2 + CORRECTIONS if side == "ours" else 1 + MICRO_SAM_CORRECTIONS,
        "trainable": trainable,
        "threads": torch.get_num_threads(),
        "steps": steps,
        "seconds": statistics.median(seconds),
        "step_mib": _peak_rss_mib() - loaded_rss,
        "loaded_mib": loaded_rss,
    }


def _report(rows: list[dict]) -> None:
    """Print the settings and a markdown table row per side."""
    ours = rows[0]
    print(
        f"\n{ours['model']} at {ours['input']} px, preset {ours['preset']}, {ours['objects']} objects per step, "
        f"float32 on the CPU, {ours['threads']} torch threads, median of {ours['steps']} step(s) after 1 warm-up."
    )
    print(
        f"ours: loop._Stepper.step on _Objective (recipe PAPER: box + point start, {CORRECTIONS} correction "
        "passes per half of the objects, Dice+BCE+IoU at 1/4 resolution, AdamW lr 1e-5)."
    )
    print(
        f"micro_sam: SAM2Train.forward + PEFT_Sam2 (1 start + {MICRO_SAM_CORRECTIONS} corrections, "
        "CustomSAM2Loss defaults Dice+IoU at full resolution, AdamW lr 1e-5 wd 0.1).\n"
    )
    print("| side | model | input | preset | objects | decoder calls | passes per object | trainable "
          "| threads | s per step | step memory | process, model built |")  # fmt: skip
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['side']} | {r['model']} | {r['input']} | {r['preset']} | {r['objects']} | {r['decoder_calls']} "
            f"| {r['passes_per_object']} | {r['trainable']:,} | {r['threads']} | {r['seconds']:.2f} "
            f"| {r['step_mib']:.0f} MiB | {r['loaded_mib']:.0f} MiB |"
        )


def main(argv: list[str] | None = None) -> int:
    """Run each side in its own process and report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hvit_t", choices=("hvit_t", "tiny_hiera"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--preset", default="lora", choices=("lora", "late_lora"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="tiny_hiera, 1 step")
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", default=None, choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.steps = "tiny_hiera", 1
    if args.child is not None:
        print(json.dumps(measure(args.child, args.model, args.preset, args.steps, args.threads)))
        return 0
    rows = []
    for side in SIDES:
        child = [sys.executable, __file__, "--child", side, "--model", args.model, "--preset", args.preset]
        child += ["--steps", str(args.steps), "--threads", str(args.threads)]
        rows.append(measured_in_child(child, f"The {side} side"))
        print(json.dumps(rows[-1]), flush=True)
    _report(rows)
    write_rows(rows, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
