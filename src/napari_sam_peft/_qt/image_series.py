"""An image series in napari: the viewer's image layers, and a folder opened as one."""

from __future__ import annotations

from pathlib import Path

import napari

from napari_sam_peft.core.errors import SamPeftError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


def image_layer_names(viewer: napari.Viewer) -> list[str]:
    """The names of the viewer's image layers, in layer order."""
    return [layer.name for layer in viewer.layers if isinstance(layer, napari.layers.Image)]


def open_image_folder(viewer: napari.Viewer, folder: str | Path) -> str:
    """Add every image file of ``folder`` as a (hidden) image layer; returns the first one's name.

    Raises
    ------
    SamPeftError
        The folder holds no image file.
    """
    import imageio.v3 as iio

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise SamPeftError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {folder}.")
    for path in files:
        viewer.add_image(iio.imread(path), name=path.stem, visible=False)
    return files[0].stem
