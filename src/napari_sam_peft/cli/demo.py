"""``napari-sam-peft demo``: open napari with the plugin, the demo model and its sample data."""

from __future__ import annotations

import argparse

PLUGIN = "napari-sam-peft"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="open napari with the Segment widget, the demo model and the sample data",
        description="Open napari with both sample domains (nuclei and cells), the Segment widget docked "
        "and the bundled demo model loaded. Everything works offline.",
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
    dock_widgets(viewer)
    napari.run()
    return 0


def dock_widgets(viewer) -> None:
    """Dock the plugin's widgets and load the bundled demo model into the viewer's session."""
    from napari_sam_peft._qt.dataset_widget import DatasetWidget
    from napari_sam_peft._qt.segment_widget import SegmentWidget
    from napari_sam_peft.core.models import load_model

    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment", area="right")
    viewer.window.add_dock_widget(DatasetWidget(viewer), name="Dataset", area="right", tabify=True)
    widget.session.set_model(load_model("demo"))


def open_demo_samples(viewer, sample: str = "both") -> None:
    """Open the chosen sample domains in ``viewer`` through the plugin's manifest."""
    keys = ("nuclei", "cells") if sample == "both" else (sample,)
    for key in keys:
        viewer.open_sample(PLUGIN, key)
