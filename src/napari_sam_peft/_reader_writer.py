"""napari reader for ``*.sampeft.zarr`` annotation stores and writer for an image + labels pair."""

from __future__ import annotations

from pathlib import Path

from napari_sam_peft.core.data.store import STORE_SUFFIX, AnnotationStore
from napari_sam_peft.core.errors import SamPeftError


def get_reader(path):
    """Return a reader for an annotation store, or None so napari tries other readers."""
    if isinstance(path, list):
        path = path[0] if len(path) == 1 else None
    if path is None or not str(path).rstrip("/").endswith(STORE_SUFFIX):
        return None
    try:
        AnnotationStore(path)
    except SamPeftError:
        return None
    return read_store


def read_store(path) -> list[tuple]:
    """Each image of the store as an image layer plus its objects as a labels layer."""
    if isinstance(path, list):
        path = path[0]
    store = AnnotationStore(path)
    layers = []
    for image in store.snapshot().images:
        name = image.name or image.image_id[:8]
        metadata = {"sampeft_store": str(store.path), "sampeft_image_id": image.image_id, "split": image.split}
        layers.append((store.image(image.image_id), {"name": name, "metadata": metadata}, "image"))
        layers.append((store.labels(image), {"name": f"{name} labels", "metadata": metadata}, "labels"))
    return layers


def write_image_and_labels(path: str, layer_data: list[tuple]) -> list[str]:
    """Write one image layer and one labels layer into a (new or existing) store at ``path``."""
    by_type = {layer_type: (data, meta) for data, meta, layer_type in layer_data}
    if set(by_type) != {"image", "labels"}:
        raise SamPeftError("Select exactly one image layer and one labels layer to save as an annotation store.")
    target = Path(path)
    if not target.name.endswith(STORE_SUFFIX):
        target = target.with_name(target.name.removesuffix(".zarr") + STORE_SUFFIX)
    image, image_meta = by_type["image"]
    labels, _ = by_type["labels"]
    store = AnnotationStore(target) if target.exists() else AnnotationStore.create(target)
    store.add_labels(image, labels, name=image_meta.get("name", ""))
    return [str(target)]
