"""The model a session segments with: :class:`~.model_state.ModelState` (base model, adapter, decoder,
precision, version, lock, the base-only switch) and what runs it: masks from prompts, the instance
decoder automatic segmentation uses, and automatic segmentation of an image.

Each operation takes the state's lock, so an adapter switch cannot happen half-way through it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sam_peft.core.annotation.commits import keep_object_components
from napari_sam_peft.core.annotation.embeddings import tiling_for
from napari_sam_peft.core.annotation.images import check_image
from napari_sam_peft.core.annotation.progress import ProgressCallback
from napari_sam_peft.core.annotation.prompting import ObjectPrompts, segment_objects

from .errors import SessionBusyError
from .model_state import ModelState

Tiling = tuple[tuple[int, int] | None, tuple[int, int] | None]  # tile shape, halo


class LiveModel(ModelState):
    """The live model's state (see :class:`ModelState`: signals ``base_changed``, ``adapter_changed``) and
    the operations that run it."""

    def tiling_for(self, image: np.ndarray) -> Tiling:
        """Tile images larger than twice the model's input size; each tile+halo is one model input."""
        return tiling_for(image.shape, self.require().architecture.img_size)

    def segment(self, embeddings: dict, objects: list[ObjectPrompts]) -> list[np.ndarray]:
        """Masks for prompts, without stray specks.

        Called on the GUI thread, so it never waits long for the model.

        Raises
        ------
        SessionBusyError
            The model is busy on a worker thread.
        """
        if not self.lock.acquire(timeout=0.2):
            raise SessionBusyError(
                "The model is busy (computing embeddings or an automatic segmentation): "
                "try again when the progress bar has finished."
            )
        try:
            masks = segment_objects(self.predictor, embeddings, objects)
        finally:
            self.lock.release()
        return [keep_object_components(m, o.points, o.labels) for m, o in zip(masks, objects, strict=True)]

    def automatic_decoder(self) -> Any:
        """The instance decoder automatic segmentation uses now, for an image and a volume alike: the live
        adapter's; else, for a micro_sam registry model that has one (``*_lm``, ...), micro_sam's (fetched
        once); else None (mask generation). Call it holding :attr:`lock`, on a worker thread."""
        model = self.require()
        self.decoder.fetch_registry_decoder(model, has_adapter=self.adapter is not None)
        return self.decoder.module(model)

    def automatic(
        self,
        image: np.ndarray,
        embeddings: dict,
        progress: ProgressCallback | None = None,
        rgb: bool | None = None,
        points_per_side: int | None = None,
        object_size: float | None = None,
    ) -> np.ndarray:
        """An instance segmentation (H, W) of ``image`` (greyscale, or RGB: ``rgb`` is napari's ``layer.rgb``).

        ``embeddings`` are the image's (see :meth:`SessionEmbeddings.compute`). With an instance
        decoder this is AIS (tiled like the embeddings); otherwise mask generation with a
        ``points_per_side`` grid (None: sized to the image and the typical annotated ``object_size``), in
        the session's precision. :attr:`LiveDecoder.description` says which one runs.
        """
        from napari_sam_peft.core.annotation.automatic import automatic_segmentation
        from napari_sam_peft.core.instance import instance_segmentation

        image = check_image(image, rgb)
        tile, halo = self.tiling_for(image)
        with self.lock:
            decoder = self.automatic_decoder()  # read once: a reload may swap the weights meanwhile
            if decoder is not None:
                return instance_segmentation(
                    self.predictor, decoder, image, embeddings, tile_shape=tile, halo=halo, progress=progress
                )
            return automatic_segmentation(
                self.predictor,
                image,
                embeddings,
                tile_shape=tile,
                halo=halo,
                points_per_side=points_per_side,
                object_size=object_size,
                autocast=self.precision.autocast,
                progress=progress,
            )
