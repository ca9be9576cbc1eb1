"""The session's automatic segmentation: AIS with an instance decoder where there is one, else AMG.

The decoder comes with the live adapter when it was trained jointly (``with_decoder``): every hot
reload swaps adapter and decoder together. Without one, a micro_sam registry model that has a
``*_decoder`` (``vit_t_lm``, ``vit_b_em_organelles``, ...) uses micro_sam's, fetched on first use;
every other model falls back to micro_sam's automatic mask generation (AMG). The session says
which ran and why (:attr:`AutomaticModel.automatic_description`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sam_peft.core.annotation.images import check_image
from napari_sam_peft.core.annotation.progress import ProgressCallback
from napari_sam_peft.core.annotation.uncertainty import Uncertainty, image_uncertainty
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.sam.loading import LoadedModel

from .events import AdapterChange
from .live_model import LiveModel

#: the two automatic methods, as the widgets and ``evaluate`` name them
AIS, AMG = "ais", "amg"


class AutomaticModel(LiveModel):
    """A :class:`LiveModel` that segments whole images automatically and ranks images by uncertainty."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the live instance decoder's weights (micro_sam's names), or None; the module is built from
        #: them on the first worker that needs it, so a hot reload costs the GUI thread nothing
        self.decoder_state: dict | None = None
        self._built: tuple[dict, Any] | None = None  # (the state it was built from, the module)
        self.decoder_source = ""  # where it came from, for the user: "the live adapter", "micro_sam's ..."
        self._registry_tried: str | None = None  # the model whose registry decoder was looked up
        self.fallback_reason = ""  # why AMG runs instead of AIS, for the user
        # connected first, so the decoder is swapped before any widget hears of the change
        self.model_changed.connect(self._model_changed_decoder)
        self.adapter_changed.connect(self._adapter_changed_decoder)

    @property
    def has_decoder(self) -> bool:
        """Whether an instance decoder is live (automatic segmentation is then AIS)."""
        return self.decoder_state is not None

    @property
    def automatic_method(self) -> str:
        """``"ais"`` when an instance decoder is live, else ``"amg"``."""
        return AIS if self.has_decoder else AMG

    @property
    def automatic_description(self) -> str:
        """Which automatic segmentation runs, in words a user reads."""
        if self.has_decoder:
            return f"instance segmentation with the decoder of {self.decoder_source} (AIS)"
        reason = f": {self.fallback_reason}" if self.fallback_reason else ""
        return f"automatic mask generation (AMG){reason}"

    def live_decoder(self) -> Any:
        """The live decoder module, built on first use from :attr:`decoder_state` (call it on a worker
        thread: building micro_sam's UNETR takes about 0.1 s), or None."""
        state = self.decoder_state
        if state is None:
            return None
        if self._built is None or self._built[0] is not state:
            from napari_sam_peft.core.instance import build_decoder

            self._built = (state, build_decoder(self.require_model().sam, state))
        return self._built[1]

    def _model_changed_decoder(self, model: LoadedModel) -> None:
        self.decoder_state, self._built, self.decoder_source, self._registry_tried = None, None, "", None
        self.fallback_reason = "no instance decoder for this model yet: finetune with the instance decoder"

    def _adapter_changed_decoder(self, change: AdapterChange) -> None:
        # on the GUI thread at each hot reload: only the weights are swapped (one assignment), the
        # module is built by the next worker that segments
        adapter = change.adapter
        if adapter is not None and adapter.has_decoder:
            self.decoder_state, self.decoder_source = adapter.decoder, "the live adapter"
            self._registry_tried = None
        elif self.decoder_source == "the live adapter":
            self.decoder_state, self.decoder_source = None, ""
            if adapter is not None:
                self.fallback_reason = "the live adapter was trained without the instance decoder"

    def _registry_decoder(self) -> None:
        """Fetch micro_sam's decoder for a registry model once (on a worker thread: it may download)."""
        from napari_sam_peft.core.instance import registry_decoder_state

        model = self.require_model()
        if self.has_decoder or self._registry_tried == model.identity.name or self.adapter is not None:
            return
        self._registry_tried = model.identity.name
        try:
            state = registry_decoder_state(model.identity.name)
        except SamPeftError as err:
            self.fallback_reason = str(err)
            return
        if state is not None:
            self.decoder_state, self.decoder_source = state, "micro_sam's model registry"

    def automatic(
        self,
        image: np.ndarray,
        embeddings: dict,
        progress: ProgressCallback | None = None,
        rgb: bool | None = None,
        points_per_side: int | None = None,
    ) -> np.ndarray:
        """An instance segmentation (H, W) of ``image`` (greyscale, or RGB: see ``compute_embeddings``).

        ``embeddings`` are ``compute_embeddings``'s for the same image. With an instance decoder this
        is AIS (tiled like the embeddings); otherwise micro_sam's AMG with a ``points_per_side`` grid
        (default: see :func:`~napari_sam_peft.core.annotation.automatic.automatic_segmentation`).
        :attr:`automatic_description` says which one ran.
        """
        from napari_sam_peft.core.annotation.automatic import automatic_segmentation
        from napari_sam_peft.core.instance import instance_segmentation

        image = check_image(image, rgb)
        tile, halo = self.tiling_for(image)
        with self.lock:
            self._registry_decoder()
            decoder = self.live_decoder()  # read once: a reload may swap the weights meanwhile
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
                progress=progress,
            )

    def uncertainty(
        self, image: np.ndarray, rgb: bool | None = None, progress: ProgressCallback | None = None
    ) -> Uncertainty:
        """How unsure the current model (with its adapter) is on ``image`` (embeds it, through the cache)."""
        _, embeddings = self.compute_embeddings(image, rgb, progress=progress)
        with self.lock:
            return image_uncertainty(self.predictor, embeddings, check_image(image, rgb).shape)
