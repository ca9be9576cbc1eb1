"""``napari-sam-peft methods``: every preset with its adapted blocks and trainable parameters."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from napari_sam_peft.core.errors import InvalidCheckpointError, ModelNotAvailableError
from napari_sam_peft.core.peft import PRESETS, format_blocks, spec_from_preset

if TYPE_CHECKING:
    from napari_sam_peft.core.sam.architecture import Architecture

NAME = "methods"
HELP = "list the PEFT presets with their blocks and trainable parameters"
DESCRIPTION = (
    "List every PEFT preset for a model: method, adapted encoder blocks, trainable "
    "parameters. Counts are computed without loading weights."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``napari-sam-peft methods``."""
    parser.add_argument(
        "--model",
        default="vit_b",
        metavar="NAME|FILE",
        help="registry name (vit_b, vit_b_lm, hvit_t, ...), 'demo', or a checkpoint file (default: vit_b)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def architecture_of(model: str) -> Architecture:
    """The architecture of a model name or file, without downloading weights."""
    from napari_sam_peft.core.sam.architecture import architecture_for_model_name, infer_architecture
    from napari_sam_peft.core.sam.loading import CHECKPOINT_SUFFIXES, known_model_names, read_checkpoint
    from napari_sam_peft.core.sam.registry import BUNDLED_MODELS

    if model in BUNDLED_MODELS:
        state, architecture, _ = read_checkpoint(BUNDLED_MODELS[model].path())
        return architecture or infer_architecture(state, name=model)
    path = Path(model).expanduser()
    if path.is_file():
        state, architecture, name = read_checkpoint(path)
        return architecture or infer_architecture(state, name=name or path.stem)
    if path.suffix in CHECKPOINT_SUFFIXES or "/" in model:
        raise InvalidCheckpointError(f"No model file at {path}. Check the path, or pick a registry name.")
    names = known_model_names()
    if model in names:
        return architecture_for_model_name(model)
    raise ModelNotAvailableError(
        f"Unknown model {model!r}: give 'demo', a checkpoint file, or one of {', '.join(names)}."
    )


def method_rows(architecture: Architecture) -> list[dict]:
    """One row per preset of the registry: its method, blocks and trainable parameters."""
    from napari_sam_peft.core.peft import count_trainable_parameters

    rows = []
    for name in PRESETS:
        spec = spec_from_preset(name, architecture.depth)
        rows.append(
            {
                "preset": name,
                "method": spec.method,
                "blocks": list(spec.blocks),
                "trainable_params": count_trainable_parameters(spec, architecture),
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    from napari_sam_peft.core.peft import count_trainable_parameters
    from napari_sam_peft.core.sam.architecture import VIT_B

    architecture = architecture_of(args.model) if args.model != "vit_b" else VIT_B
    rows = method_rows(architecture)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    total = count_trainable_parameters(spec_from_preset("full_ft", architecture.depth), architecture)
    print(f"PEFT presets for {args.model} ({architecture.depth} encoder blocks, {total:,} parameters)")
    if architecture.block_summary():
        print(architecture.block_summary())
    print()
    print(f"{'preset':<16}{'method':<16}{'blocks':<10}{'trainable':>14}{'share':>9}")
    for row in rows:
        blocks = format_blocks(row["blocks"], architecture.depth) if row["blocks"] else "-"
        share = row["trainable_params"] / total
        print(f"{row['preset']:<16}{row['method']:<16}{blocks:<10}{row['trainable_params']:>14,}{share:>9.1%}")
    return 0
