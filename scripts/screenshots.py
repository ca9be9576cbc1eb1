"""Take the documentation's screenshots from a real napari window.

Run under a virtual screen: ``xvfb-run -a python scripts/screenshots.py``. Each shot is
written to docs/images/.
"""

from __future__ import annotations

from pathlib import Path

import napari

from napari_sam_peft.cli.demo import open_demo_samples

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def _save(viewer: napari.Viewer, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.resize(1400, 860)
    napari.qt.get_qapp().processEvents()
    viewer.screenshot(str(OUT / name), canvas_only=False)
    print(f"wrote {OUT / name}")


def samples() -> None:
    viewer = napari.Viewer(title="napari-sam-peft")
    open_demo_samples(viewer, "both")
    for name in ("nuclei (domain A) ground truth", "cells (domain B) ground truth"):
        viewer.layers[name].visible = True
        viewer.layers[name].contour = 2
    viewer.canvas.grid.stride = 2  # each image shares its grid cell with its labels
    viewer.canvas.grid.enabled = True
    viewer.reset_view()
    _save(viewer, "napari_samples.png")
    viewer.close()


if __name__ == "__main__":
    samples()
