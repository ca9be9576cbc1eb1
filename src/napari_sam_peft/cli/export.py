"""``napari-sam-peft export``: base model + adapter -> one plain SAM checkpoint for micro_sam.

The merged file is an original-format SAM state dict (``torch.save`` of tensors only), so
micro_sam's annotator loads it with ``get_sam_model(model_type, checkpoint_path=...)`` and
``segment_anything.sam_model_registry[model_type](checkpoint=...)`` builds it too. An adapter
trained with the instance decoder is written as micro_sam's own finetuned checkpoints are,
``{"model_state": ..., "decoder_state": ...}``, so micro_sam's annotator runs AIS with it
(``get_predictor_and_decoder(model_type, checkpoint_path)``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_sam_peft.cli.options import add_model_options
from napari_sam_peft.core.atomic import atomic_path
from napari_sam_peft.core.errors import SamPeftError

SUFFIXES = (".pth", ".pt")


NAME = "export"
HELP = "merge an adapter into its base model and write a plain SAM checkpoint (.pth) for micro_sam"
DESCRIPTION = (
    "Merge ADAPTER into the base model it was trained on and write the result as a plain SAM "
    "checkpoint that micro_sam (model type = the base's, e.g. vit_b) and segment_anything load. "
    "AdaptFormer cannot be merged (it adds a non-linear branch)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``napari-sam-peft export``."""
    parser.add_argument("adapter", type=Path, metavar="ADAPTER")
    add_model_options(parser, "the adapter's base model", device="cpu")
    parser.add_argument("--out", type=Path, required=True, metavar="MERGED.pth")


def run(args: argparse.Namespace) -> int:
    import torch

    from napari_sam_peft.core.peft import Adapter
    from napari_sam_peft.core.sam.loading import load_model

    if args.out.suffix not in SUFFIXES:
        raise SamPeftError(f"--out must end in .pth or .pt (micro_sam reads those), not {args.out.name!r}.")
    adapter = Adapter.load(args.adapter)
    model = load_model(args.model, device=args.device)
    merged = {k: tensor.detach().cpu().contiguous() for k, tensor in adapter.merged_state_dict(model).items()}
    checkpoint: dict = {"model_state": merged, "decoder_state": adapter.decoder} if adapter.has_decoder else merged
    with atomic_path(args.out) as tmp:
        torch.save(checkpoint, tmp)
    architecture = model.architecture.name
    print(
        f"wrote {args.out}: {model.identity.name} + {adapter.spec.describe(model.architecture.depth)}, merged"
        + (", with the instance decoder" if adapter.has_decoder else "")
        + f". In micro_sam: get_sam_model(model_type={architecture!r}, checkpoint_path={str(args.out)!r})"
        + (" and, for AIS, get_predictor_and_decoder with the same arguments" if adapter.has_decoder else ""),
        file=sys.stderr,
    )
    return 0
