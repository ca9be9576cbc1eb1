"""``napari-sam-peft demo``: open napari with the plugin and its sample data."""

from __future__ import annotations

import argparse

PLUGIN = "napari-sam-peft"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="open napari with the plugin and its synthetic sample data",
        description="Open napari with both sample domains (nuclei and cells) of napari-sam-peft.",
    )
    parser.add_argument(
        "--sample",
        choices=("nuclei", "cells", "both"),
        default="both",
        help="which sample domain to open (default: both)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import napari

    viewer = napari.Viewer(title="napari-sam-peft demo")
    open_demo_samples(viewer, args.sample)
    napari.run()
    return 0


def open_demo_samples(viewer, sample: str = "both") -> None:
    """Open the chosen sample domains in ``viewer`` through the plugin's manifest."""
    keys = ("nuclei", "cells") if sample == "both" else (sample,)
    for key in keys:
        viewer.open_sample(PLUGIN, key)
