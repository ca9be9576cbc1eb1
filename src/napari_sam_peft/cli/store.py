"""``napari-sam-peft store add | info``: import annotations into a store and describe it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_sam_peft.core.data.files import open_lazy, read_array
from napari_sam_peft.core.data.store import SPLITS, AnnotationStore, validate_labels

NAME = "store"
HELP = "import annotations into a store, or describe one"
DESCRIPTION = "import annotations into a store, or describe one"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``napari-sam-peft store``."""
    commands = parser.add_subparsers(dest="store_command", required=True, metavar="SUBCOMMAND")
    add = commands.add_parser(
        "add",
        help="add an image with its instance labels (the store is created if missing)",
        description="Add an image and its instance label image (tif, png or zarr) to STORE "
        "(a folder ending in .sampeft.zarr; created if missing). Each label id becomes one object. "
        "3D labels (Z, Y, X) make the image a volume, stored slice by slice (an uncompressed tif or a "
        "zarr volume is never loaded whole).",
    )
    add.add_argument("store", type=Path, metavar="STORE")
    add.add_argument("--image", type=Path, required=True, metavar="FILE")
    add.add_argument("--labels", type=Path, required=True, metavar="FILE")
    add.add_argument("--split", choices=SPLITS, default=None, help="default: deterministic from the image")
    add.set_defaults(run=run_add)
    info = commands.add_parser("info", help="images, objects and split of a store", description="Describe STORE.")
    info.add_argument("store", type=Path, metavar="STORE")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=run_info)


def run_add(args: argparse.Namespace) -> int:
    image, labels = open_lazy(args.image), read_array(args.labels)  # a volume is stored slice by slice
    validate_labels(image, labels)  # before creating anything
    store = AnnotationStore(args.store) if args.store.exists() else AnnotationStore.create(args.store)
    image_id, object_ids = store.add_labels(image, labels, name=args.image.stem, split=args.split)
    kind = f"volume of {labels.shape[0]} slices" if labels.ndim == 3 else "image"
    print(f"added {args.image.name} ({kind}, {len(object_ids)} objects) to {args.store} as image {image_id}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    info = AnnotationStore(args.store).info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(
            f"{args.store}: {info['images']} images ({info['train_images']} train, {info['val_images']} val), "
            f"{info['objects']} objects ({info['train_objects']} train, {info['val_objects']} val); "
            f"snapshot {info['snapshot']}"
        )
    return 0
