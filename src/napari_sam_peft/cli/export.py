"""``napari-sam-peft export``: base model + adapter -> a plain SAM checkpoint for micro_sam, or a
bioimage.io model package.

``--out MERGED.pth`` writes an original-format SAM state dict (``torch.save`` of tensors only), so
micro_sam's annotator loads it with ``get_sam_model(model_type, checkpoint_path=...)`` and
``segment_anything.sam_model_registry[model_type](checkpoint=...)`` builds it too. An adapter
trained with the instance decoder is written as micro_sam's own finetuned checkpoints are,
``{"model_state": ..., "decoder_state": ...}``, so micro_sam's annotator runs AIS with it
(``get_predictor_and_decoder(model_type, checkpoint_path)``).

``--bioimageio PACKAGE.zip`` writes a bioimage.io model package (spec 0.5, micro_sam's structure; see
``core/export/bioimageio.py``), tested with ``bioimageio.core`` before it is kept.
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
HELP = (
    "merge an adapter into its base model: a plain SAM checkpoint (.pth) for micro_sam, or a bioimage.io package"
)
DESCRIPTION = (
    "Merge ADAPTER into the base model it was trained on (recorded in the adapter) and write the result as "
    "a plain SAM checkpoint that micro_sam (model type = the base's, e.g. vit_b) and segment_anything load "
    "(--out), and/or as a bioimage.io model package (--bioimageio), tested offline with bioimageio.core. "
    "AdaptFormer cannot be merged (it adds a non-linear branch)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``napari-sam-peft export``."""
    parser.add_argument("adapter", type=Path, metavar="ADAPTER")
    add_model_options(
        parser,
        "the adapter's base model (default: the one the adapter records, by name or by the file its run "
        "trained on; a model given here must be that one)",
        device="cpu",
        required=False,
    )
    parser.add_argument("--out", type=Path, metavar="MERGED.pth", help="the merged checkpoint for micro_sam")
    parser.add_argument(
        "--bioimageio", type=Path, metavar="PACKAGE.zip", help="a bioimage.io model package (spec 0.5)"
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="STORE",
        help="the store whose annotated image gives the package's test data (default: the one the adapter's "
        "run trained on, from the run.json beside it)",
    )
    parser.add_argument("--name", help="the package's name (default: base model + method + adapter hash)")
    parser.add_argument("--author", action="append", help="an author of the package (repeat for several)")


def run(args: argparse.Namespace) -> int:
    from napari_sam_peft.core.export.base_model import load_adapter_base
    from napari_sam_peft.core.export.merged import merged_checkpoint
    from napari_sam_peft.core.peft import Adapter
    from napari_sam_peft.core.sam.registry import is_sam1

    if args.out is None and args.bioimageio is None:
        raise SamPeftError("Say what to write: --out MERGED.pth (for micro_sam) and/or --bioimageio PACKAGE.zip.")
    if args.out is not None and args.out.suffix not in SUFFIXES:
        raise SamPeftError(f"--out must end in .pth or .pt (micro_sam reads those), not {args.out.name!r}.")
    if args.bioimageio is not None and args.bioimageio.suffix != ".zip":
        raise SamPeftError(f"--bioimageio must end in .zip (a bioimage.io package), not {args.bioimageio.name!r}.")
    adapter = Adapter.load(args.adapter)
    sam1 = is_sam1(adapter.architecture)
    if args.bioimageio is not None and not sam1:
        raise SamPeftError(
            f"A bioimage.io package holds a SAM 1 model (micro_sam's format); {args.adapter.name} adapts a "
            "SAM 2.1 model. Export the merged checkpoint with --out MERGED.pt instead (sam2 and micro_sam dev "
            "load it)."
        )
    model = load_adapter_base(adapter, args.adapter, args.model, device=args.device)
    checkpoint = merged_checkpoint(adapter, model)
    architecture = model.architecture.name
    if args.bioimageio is not None:
        _export_bioimageio(args, adapter, model)
    if args.out is not None:
        import torch

        with atomic_path(args.out) as tmp:
            torch.save(checkpoint, tmp)
        what = adapter.spec.describe(model.architecture.depth)
        merged = f"wrote {args.out}: {model.identity.name} + {what}, merged"
        if not sam1:
            print(
                f"{merged}, as Meta's SAM 2.1 checkpoints are. In micro_sam dev: get_sam2_model("
                f"model_type={architecture!r}, checkpoint_path={str(args.out)!r}); in sam2: build_sam2(the "
                f"{architecture} config, ckpt_path={str(args.out)!r})",
                file=sys.stderr,
            )
            return 0
        print(
            merged
            + (", with the instance decoder" if adapter.has_decoder else "")
            + f". In micro_sam: get_sam_model(model_type={architecture!r}, checkpoint_path={str(args.out)!r})"
            + (" and, for AIS, get_predictor_and_decoder with the same arguments" if adapter.has_decoder else ""),
            file=sys.stderr,
        )
    return 0


def _export_bioimageio(args: argparse.Namespace, adapter, model) -> None:
    from napari_sam_peft.core.export.bioimageio import default_authors, export_bioimageio
    from napari_sam_peft.core.export.bioimageio_docs import PackageContent, adapter_chain
    from napari_sam_peft.core.export.bioimageio_tensors import store_test_sample
    from napari_sam_peft.core.training.runs import RECORD_NAME, list_runs, read_run

    record_path = args.adapter.parent / RECORD_NAME
    record = read_run(record_path) if record_path.is_file() else None
    store = args.store or (record.store if record is not None else None)
    if store is None or not store.is_dir():
        raise SamPeftError(
            "The package's test data comes from an annotated image: give --store STORE (the adapter has no run "
            f"record naming its store{'' if store is None else f', and {store} does not exist'})."
        )
    image, labels = store_test_sample(store)
    name = (
        args.name or f"{model.identity.name} {adapter.spec.preset or adapter.spec.method} {adapter.identity[:8]}"
    )
    content = PackageContent(
        name=name,
        test_image=image,
        test_labels=labels,
        authors=args.author or default_authors(),
        record=record,
        parents=adapter_chain(adapter, list_runs(store)),
    )
    print(f"writing and testing the bioimage.io package {args.bioimageio} ...", file=sys.stderr)
    result = export_bioimageio(adapter, args.adapter, model, args.bioimageio, content)
    print(
        f"wrote {result.path}: bioimage.io model (spec 0.5) of {model.identity.name} + "
        f"{adapter.spec.describe(model.architecture.depth)}"
        + (" with the instance decoder" if result.with_decoder else "")
        + f"; bioimageio.core's test: {result.status}",
        file=sys.stderr,
    )
