"""What a view annotates: one protocol for a 2D image and a volume.

:meth:`AnnotatorSession.open <napari_sam_peft.session.annotator.AnnotatorSession.open>` returns an
:class:`~.image_annotator.ImageAnnotator` or a :class:`~.volume_annotator.VolumeAnnotator`, both of
this shape; a view sends the user's actions to it and draws what it returns, without asking which of
the two it holds (only volume-only controls, such as propagation, read :attr:`Annotator.is_volume`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from napari_sam_peft.core.annotation.prompting import ObjectPrompts

Progress = Callable[[int, int], None]


class Annotator(Protocol):
    """The shown image or volume, as the live model sees it.

    Attributes
    ----------
    name
        napari's layer name (the store's image name).
    data
        What identifies it in the store: a 2D image's checked pixels; a volume's array as the layer holds
        it (read slice by slice).
    rgb
        napari's ``layer.rgb``.
    labels_shape
        The shape of its labels: (H, W), or (Z, H, W).
    is_volume
        Whether it is a volume (only volume-only controls read it).
    one_object_at_a_time
        Whether prompts make one object at a time (a volume), so batch mode does not apply.
    """

    name: str
    data: Any
    rgb: bool | None
    labels_shape: tuple[int, ...]
    is_volume: bool
    one_object_at_a_time: bool

    def slice_of(self, z: int) -> int | None:
        """The slice prompts belong to when slice ``z`` is on screen (None: a 2D image)."""
        ...

    def plane(self, z: int) -> tuple[int, ...]:
        """The index into the labels of what slice ``z`` on screen shows."""
        ...

    @property
    def ready(self) -> bool:
        """Whether its embeddings are complete for the current model."""
        ...

    def embed(
        self,
        focus: Callable[[], int],
        *,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Any:
        """Compute its embeddings for the current model (a worker thread; a volume: ``focus()`` first)."""
        ...

    def embedding_status(self, z: int = 0) -> str:
        """Where its embeddings are, in a line for the user (``z``: the slice on screen)."""
        ...

    def require(self) -> None:
        """Raise a :class:`~napari_sam_peft.core.errors.SamPeftError` saying what to do when prompts or
        automatic segmentation cannot run now."""
        ...

    def segment(self, objects: list[ObjectPrompts], z: int = 0) -> list[np.ndarray]:
        """A mask per prompted object (on slice ``z`` of a volume)."""
        ...

    @property
    def automatic_method(self) -> str:
        """What :meth:`automatic` runs, in words."""
        ...

    @property
    def automatic_title(self) -> str:
        """The progress bar's title for :meth:`automatic`."""
        ...

    def automatic(
        self,
        progress: Progress | None = None,
        should_stop: Callable[[], bool] | None = None,
        points_per_side: int | None = None,
    ) -> np.ndarray:
        """Every object, as labels of :attr:`labels_shape` (a worker thread)."""
        ...

    def keep_stage_input(self, stage: int) -> None:
        """Keep what makes re-embedding after a reload fast (a worker thread)."""
        ...


def open_annotator(
    model: Any,
    embeddings: Any,
    name: str,
    data: Any,
    rgb: bool | None = None,
    object_size: Callable[[], float | None] | None = None,
) -> Annotator:
    """The annotator for ``data``: a volume's (Z, Y, X[, 3]) or a 2D image's.

    ``object_size`` says the typical annotated object's side in pixels (None: none yet), which sizes the
    automatic segmentation's point grid.

    Raises
    ------
    InvalidImageError, InvalidVolumeError
        What SAM cannot take, with what to do.
    """
    from napari_sam_peft.core.volume.volumes import is_volume

    from .image_annotator import ImageAnnotator
    from .volume_annotator import VolumeAnnotator

    if is_volume(data, rgb):
        return VolumeAnnotator(model, embeddings, data, rgb, name=name, object_size=object_size)
    return ImageAnnotator(model, embeddings, data, rgb, name=name, object_size=object_size)
