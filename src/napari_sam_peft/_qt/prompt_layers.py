"""The annotator's layers and keys, as micro_sam users know them.

Layers: ``point_prompts`` (positive/negative points), ``prompts`` (boxes),
``current_object``, ``committed_objects`` and ``auto_segmentation``.
"""

from __future__ import annotations

from collections.abc import Callable

import napari
import numpy as np
from qtpy.QtCore import QTimer

from napari_sam_peft.core.annotation.prompting import ObjectPrompts, box_from_corners, split_into_objects

#: the annotator's layers: kept above every other layer, in the order they have among themselves
ANNOTATOR_LAYERS = ("committed_objects", "auto_segmentation", "current_object", "prompts", "point_prompts")
POINT_LABELS = ("positive", "negative")
POINT_COLORS = ["#00FF00", "#FF0000"]


def point_size_for(shape: tuple[int, ...]) -> float:
    """A point marker that marks a spot without hiding a cell: about 1/80 of the image's shorter side."""
    return float(max(3, round(min(shape[:2]) / 80)))


def create_prompt_layers(
    viewer: napari.Viewer, ndim: int = 2
) -> tuple[napari.layers.Points, napari.layers.Shapes]:
    """The ``point_prompts`` and ``prompts`` layers (reused when they exist with ``ndim`` dimensions).

    A volume's prompt layers are 3D, as micro_sam's annotator_3d has them: a point or a box belongs
    to the slice it was placed on, and shows only there.
    """
    for name in ("point_prompts", "prompts"):
        if name in viewer.layers and viewer.layers[name].ndim != ndim:
            viewer.layers.remove(name)
    if "point_prompts" not in viewer.layers:
        viewer.add_points(
            name="point_prompts",
            property_choices={"label": list(POINT_LABELS)},
            border_color="label",
            border_color_cycle=POINT_COLORS,
            symbol="o",
            face_color="transparent",
            border_width=0.3,
            border_width_is_relative=True,
            size=6,
            ndim=ndim,
        )
        viewer.layers["point_prompts"].border_color_mode = "cycle"
    if "prompts" not in viewer.layers:
        viewer.add_shapes(name="prompts", face_color="transparent", edge_color="green", edge_width=2, ndim=ndim)
    return viewer.layers["point_prompts"], viewer.layers["prompts"]


def labels_layer(viewer: napari.Viewer, name: str, shape: tuple[int, int]) -> napari.layers.Labels:
    """A labels layer of ``shape`` named ``name``, below the prompt layers so they stay clickable."""
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.data.shape != shape:
            layer.data = np.zeros(shape, dtype=np.uint32)
        return layer
    layer = viewer.add_labels(np.zeros(shape, dtype=np.uint32), name=name)
    for prompt_name in ("prompts", "point_prompts"):
        if prompt_name in viewer.layers:
            viewer.layers.move(viewer.layers.index(prompt_name), len(viewer.layers))
    return layer


def raise_annotator_layers(viewer: napari.Viewer) -> bool:
    """Move the annotator's layers above every other layer, keeping their order among themselves.

    napari puts a layer opened later (File > Open, Open Sample, a plugin's reader) on top of the list,
    where it would hide the masks; micro_sam's annotator keeps its layers on top. Returns whether any moved.
    """
    layers = viewer.layers
    names = [layer.name for layer in layers]
    ours = [name for name in names if name in ANNOTATOR_LAYERS]
    if not ours or names[len(names) - len(ours) :] == ours:
        return False
    for name in ours:
        layers.move(layers.index(name), len(layers))
    return True


def read_prompts(points_layer, boxes_layer, batch: bool, z: int | None = None) -> list[ObjectPrompts]:
    """The prompts on the layers, grouped into objects (see :func:`split_into_objects`).

    ``z``: only the prompts on that slice of a volume's 3D layers (each object records the slice).
    """
    data = np.asarray(points_layer.data).reshape(-1, points_layer.ndim)
    labels = np.array([1 if lab == "positive" else 0 for lab in points_layer.properties.get("label", [])])
    on_slice = np.ones(len(data), dtype=bool) if z is None else np.round(data[:, 0]).astype(int) == z
    boxes = [
        box_from_corners(shape)
        for shape, kind in zip(boxes_layer.data, boxes_layer.shape_type, strict=True)
        if kind == "rectangle" and (z is None or int(round(float(np.asarray(shape)[0, 0]))) == z)
    ]
    objects = split_into_objects(data[on_slice][:, -2:], labels[on_slice], boxes, batch=batch)
    for obj in objects:
        obj.slice = z
    return objects


def prompted_slices(points_layer, boxes_layer) -> list[int]:
    """The slices of a volume that hold prompts (points or boxes), ascending."""
    slices = {int(round(float(z))) for z in np.asarray(points_layer.data).reshape(-1, points_layer.ndim)[:, 0]}
    slices |= {int(round(float(np.asarray(shape)[0, 0]))) for shape in boxes_layer.data}
    return sorted(slices)


def toggle_point_label(points_layer) -> None:
    """Switch the label of the next point between positive and negative (micro_sam's ``T``).

    Sets the layer's ``feature_defaults``: napari's ``current_properties`` setter also
    relabels the selected points. The point just placed is selected, so ``T`` before the next
    point flipped the last one; and after a commit cleared the points their selection stayed,
    so ``T`` indexed a point that was gone and raised a ``KeyError`` inside the key event.
    """
    defaults = points_layer.feature_defaults
    label = str(defaults["label"].iloc[0]) if "label" in defaults and len(defaults) else "positive"
    points_layer.feature_defaults = {"label": "negative" if label == "positive" else "positive"}


class KeyBindings:
    """The annotator's keys on the viewer and on every layer.

    napari gives a selected layer's own keys priority over the viewer's (an image layer's
    ``C`` is "auto-contrast once"), so the keys are bound on each layer too, including
    layers added later.

    An action runs after the key event that delivered it has returned (a zero-delay timer):
    napari delivers keys inside vispy's ``key_press`` emitter, which raises "EventEmitter
    loop detected!" if anything the action does makes Qt deliver another key meanwhile.
    """

    def __init__(self, viewer: napari.Viewer, actions: dict[str, Callable[[], None]]) -> None:
        self.viewer = viewer
        self.actions = actions
        for target in (viewer, *viewer.layers):
            self._bind(target)
        viewer.layers.events.inserted.connect(self._layer_inserted)

    def _bind(self, target) -> None:
        for key, action in self.actions.items():
            target.bind_key(key, _key_handler(action), overwrite=True)

    def _layer_inserted(self, event) -> None:
        self._bind(event.value)

    def disconnect(self) -> None:
        self.viewer.layers.events.inserted.disconnect(self._layer_inserted)


def _key_handler(action: Callable[[], None]):
    def handler(*_):
        QTimer.singleShot(0, action)

    return handler
