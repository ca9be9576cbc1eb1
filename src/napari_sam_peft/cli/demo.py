"""``napari-sam-peft demo``: the whole loop on LiteMedSAM (offline) and generated images.

With a display it opens napari on domain-B images (dim, elongated cells) with the Segment,
Dataset and Finetune widgets docked, LiteMedSAM's pretrained weights loaded (``--model demo``:
the small demo model, trained on domain-A nuclei) and an annotation store open.
``--headless`` runs the loop without a display and prints a before/after table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PLUGIN = "napari-sam-peft"
DEMO_IMAGES = 3


NAME = "demo"
HELP = "open napari with the plugin on LiteMedSAM and sample data, or run the loop headless"
DESCRIPTION = (
    "Open napari on generated domain-B cell images with the Segment, Dataset and Finetune widgets "
    "docked and LiteMedSAM's pretrained weights loaded (offline; --model demo for the small demo model). "
    "With --headless, run two rounds of pre-annotation, correction from the ground truth and finetuning "
    "(the recommended preset with the instance decoder; round two is pre-segmented with AIS by round "
    "one's adapter), then evaluation, without a display, and print what the simulated user accepted, "
    "corrected and painted per round and a before/after table (several minutes on a CPU). "
    "--sample volume opens a generated nuclei volume instead; with --headless it annotates two volumes by "
    "a box on each nucleus' middle slice and propagation through z, finetunes on their slices and prints "
    "the before/after table of a held-out volume, with its 3D scores."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``napari-sam-peft demo``."""
    parser.add_argument("--headless", action="store_true", help="run the whole loop without a display")
    parser.add_argument(
        "--sample",
        choices=("cells", "nuclei", "both", "volume"),
        default="cells",
        help="which sample domain to open in napari (default: cells, where the demo model needs finetuning; "
        "volume: a 3D nuclei volume, also headless)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path.home() / "napari-sam-peft" / "demo",
        help="where the demo's annotation store and adapters go (default ~/napari-sam-peft/demo)",
    )
    parser.add_argument(
        "--model",
        default="lite_medsam",
        help="base model (default lite_medsam: real pretrained weights, offline; 'demo': the small demo model)",
    )
    parser.add_argument("--preset", default=None, help="headless: preset to train (default: the recommended one)")
    parser.add_argument("--steps", type=int, default=None, help="headless: training steps")


def run(args: argparse.Namespace) -> int:
    if args.headless:
        return run_headless(args)
    import napari

    viewer = napari.Viewer(title="napari-sam-peft demo")
    fit_window_to_screen(viewer)
    open_demo_samples(viewer, args.sample)
    dock_widgets(viewer, store=args.workdir / f"{args.sample}.sampeft.zarr", model=args.model)
    from qtpy.QtCore import QTimer

    QTimer.singleShot(500, viewer.reset_view)  # fit the image to the canvas once the docks have their size
    napari.run()
    return 0


def fit_window_to_screen(viewer) -> None:
    """Fill the screen the window is on (less room for a title bar), as a maximised window would."""
    from qtpy.QtWidgets import QApplication

    screen = QApplication.primaryScreen()
    if screen is None:
        return
    area = screen.availableGeometry()
    viewer.window.set_geometry(area.x(), area.y(), area.width() - 8, area.height() - 64)


def run_headless(args: argparse.Namespace) -> int:
    from napari_sam_peft.cli.demo_loop import DemoSettings, run_headless_demo

    if args.sample == "volume":
        return run_headless_volume(args)
    settings = DemoSettings(model=args.model, preset=args.preset)
    if args.steps is not None:
        settings.steps = args.steps

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result = run_headless_demo(args.workdir, settings, say)
    total = sum(result.seconds.values())
    print(result.rounds_table())
    print()
    print(result.table())
    base, adapted = result.automatic["base"], result.automatic["adapter"]
    print(
        f"\nautomatic segmentation per held-out image: base (mask generation) {base.seconds_per_image:.1f} s, "
        f"adapter ({adapted.method.upper()}) {adapted.seconds_per_image:.1f} s"
    )
    print(
        f"\n{len(settings.train_seeds) + len(settings.round_two_seeds)} annotated training images in "
        f"{len(result.rounds)} rounds, "
        f"{len(settings.held_out_seeds)} held-out images (I_P and I_B after {settings.correction_iterations} "
        "correction iterations); "
        f"annotate {result.seconds['annotate']:.0f} s, finetune {result.seconds['finetune']:.0f} s, "
        f"evaluate {result.seconds['evaluate']:.0f} s (total {total:.0f} s). Adapter: {result.adapter}"
    )
    return 0


def run_headless_volume(args: argparse.Namespace) -> int:
    from napari_sam_peft.cli.demo_volume import VolumeDemoSettings, run_volume_demo

    settings = VolumeDemoSettings(model=args.model, preset=args.preset)
    if args.steps is not None:
        settings.steps = args.steps
    result = run_volume_demo(args.workdir, settings, lambda message: print(message, file=sys.stderr, flush=True))
    print(result.table())
    print(f"\nmSA on {result.report.measured_on}.")
    seconds = result.seconds
    print(
        f"annotate {seconds['annotate']:.0f} s, finetune {seconds['finetune']:.0f} s, evaluate "
        f"{seconds['evaluate']:.0f} s (total {sum(seconds.values()):.0f} s). Adapter: {result.adapter}"
    )
    return 0


def dock_widgets(viewer, store: Path | None = None, model: str = "lite_medsam") -> None:
    """Dock Segment, Dataset and Finetune, load ``model`` (offline) and open ``store``."""
    from napari_sam_peft._qt.dataset_widget import DatasetWidget
    from napari_sam_peft._qt.finetune_widget import FinetuneWidget
    from napari_sam_peft._qt.segment_widget import SegmentWidget
    from napari_sam_peft.core.sam.loading import load_model

    segment = SegmentWidget(viewer)
    dataset = DatasetWidget(viewer)
    viewer.window.add_dock_widget(segment, name="Segment", area="right")
    viewer.window.add_dock_widget(dataset, name="Dataset", area="right", tabify=True)
    viewer.window.add_dock_widget(FinetuneWidget(viewer), name="Finetune", area="right", tabify=True)
    if store is not None:
        dataset.open_store(store)
    segment.session.model.set_base(load_model(model))
    segment.model_choice.value = model
    segment.image_choice.value = segment.image_choice.choices[0] if segment.image_choice.choices else None


def open_demo_samples(viewer, sample: str = "cells") -> None:
    """Open generated images of the chosen domain(s), or the sample volume, each with its (hidden) ground truth."""
    from napari_sam_peft._sample_data import DESCRIPTIONS, volume_sample
    from napari_sam_peft.core.data.sample_data import make_series

    if sample == "volume":
        for data, kwargs, kind in volume_sample():
            getattr(viewer, f"add_{kind}")(data, **kwargs)
        return
    keys = ("nuclei", "cells") if sample == "both" else (sample,)
    for key in keys:
        for index, item in enumerate(make_series(key, DEMO_IMAGES), start=1):
            name = f"{DESCRIPTIONS[key]} {index}"
            viewer.add_labels(item.labels, name=f"{name} ground truth", visible=False, opacity=0.5)
            viewer.add_image(item.image, name=name, metadata={"sample_domain": key, "seed": item.seed})
