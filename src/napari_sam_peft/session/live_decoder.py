"""The instance decoder that goes with the live model: which one, where it came from, or why there is none.

The decoder comes with the live adapter when it was trained jointly (``with_decoder``): every hot
reload swaps adapter and decoder together. Without one, a micro_sam registry model that has a
``*_decoder`` (``vit_t_lm``, ``vit_b_em_organelles``, ...) uses micro_sam's, fetched on first use;
every other model's automatic segmentation is micro_sam's automatic mask generation (AMG).
:attr:`LiveDecoder.description` says which runs and why.
"""

from __future__ import annotations

from typing import Any

from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.peft import Adapter
from napari_sam_peft.core.sam.loading import LoadedModel

#: the two automatic methods, as the widgets and ``evaluate`` name them
AIS, AMG = "ais", "amg"

LIVE_ADAPTER = "the live adapter"
REGISTRY = "micro_sam's model registry"


class LiveDecoder:
    """The live model's instance decoder: its weights, built into a module on the first worker that needs it.

    :class:`~napari_sam_peft.session.live_model.LiveModel` tells it of each base model and adapter
    change (:meth:`base_changed`, :meth:`adapter_changed`) before anyone hears of the change.
    """

    def __init__(self) -> None:
        self._state: dict | None = None  # the weights (micro_sam's names)
        self._built: tuple[dict, Any] | None = None  # (the state it was built from, the module)
        self._source = ""  # where it came from, for the user
        self._registry_tried: str | None = None  # the model whose registry decoder was looked up
        self._fallback_reason = ""  # why AMG runs instead of AIS, for the user

    @property
    def is_live(self) -> bool:
        """Whether an instance decoder is live (automatic segmentation is then AIS)."""
        return self._state is not None

    @property
    def state(self) -> dict | None:
        """The live decoder's weights (micro_sam's names), or None."""
        return self._state

    @property
    def method(self) -> str:
        """``"ais"`` when an instance decoder is live, else ``"amg"``."""
        return AIS if self.is_live else AMG

    @property
    def description(self) -> str:
        """Which automatic segmentation runs, in words a user reads."""
        if self.is_live:
            return f"instance segmentation with the decoder of {self._source} (AIS)"
        reason = f": {self._fallback_reason}" if self._fallback_reason else ""
        return f"automatic mask generation (AMG){reason}"

    def module(self, model: LoadedModel) -> Any:
        """The live decoder module for ``model``, built on first use (call it on a worker thread:
        building micro_sam's UNETR takes about 0.1 s), or None."""
        state = self._state
        if state is None:
            return None
        if self._built is None or self._built[0] is not state:
            from napari_sam_peft.core.instance import build_decoder

            self._built = (state, build_decoder(model.sam, state))
        return self._built[1]

    def base_changed(self) -> None:
        """A new base model: no decoder until an adapter brings one or the registry has one."""
        self._state, self._built, self._source, self._registry_tried = None, None, "", None
        self._fallback_reason = "no instance decoder for this model yet: finetune with the instance decoder"

    def adapter_changed(self, adapter: Adapter | None) -> None:
        """An adapter attached (or detached, None): its decoder is live with it (one assignment, on the
        GUI thread at each hot reload; the module is built by the next worker that segments)."""
        if adapter is not None and adapter.has_decoder:
            self._state, self._source = adapter.decoder, LIVE_ADAPTER
            self._registry_tried = None
        elif self._source == LIVE_ADAPTER:
            self._state, self._source = None, ""
            if adapter is not None:
                self._fallback_reason = "the live adapter was trained without the instance decoder"

    def fetch_registry_decoder(self, model: LoadedModel, has_adapter: bool) -> None:
        """Fetch micro_sam's decoder for a registry model once (on a worker thread: it may download)."""
        from napari_sam_peft.core.instance import registry_decoder_state

        if self.is_live or self._registry_tried == model.identity.name or has_adapter:
            return
        self._registry_tried = model.identity.name
        try:
            state = registry_decoder_state(model.identity.name)
        except SamPeftError as err:
            self._fallback_reason = str(err)
            return
        if state is not None:
            self._state, self._source = state, REGISTRY
