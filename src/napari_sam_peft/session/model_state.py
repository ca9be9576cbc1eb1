"""The state of the model a session segments with: base model, active adapter with its decoder, predictor,
precision, version, lock, and the one base-only switch both docks show.

Adapters written by the training worker are attached in place (:meth:`ModelState.reload_adapter`,
see :mod:`.adapter_reload`), so the next prompt uses them without reloading the base model. What runs
the model (prompts, automatic segmentation) is :class:`~.live_model.LiveModel`'s; it takes
:attr:`ModelState.lock`, so an adapter switch cannot happen half-way through an embedding or a
segmentation on a worker thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psygnal import Signal

from napari_sam_peft.core.annotation.embeddings import BASE_ADAPTER_KEY, tag_predictor
from napari_sam_peft.core.peft import Adapter, AttachedPeft, frozen_prefix_stages
from napari_sam_peft.core.sam.loading import LoadedModel, load_model
from napari_sam_peft.core.sam.precision import FP32_CPU, Precision, resolve_precision
from napari_sam_peft.core.sam.precision_probe import model_probe
from napari_sam_peft.core.sam.stages import stage_count

from .adapter_reload import HotReload, ReloadState
from .errors import NoModelError, SessionBusyError
from .events import AdapterChange
from .live_decoder import LiveDecoder


class ModelState:
    """Base model, active adapter, instance decoder, predictor and precision, with an event for each change.

    Signals
    -------
    base_changed(LoadedModel)
        A new base model, without an adapter.
    adapter_changed(AdapterChange)
        An adapter attached or detached (the decoder already follows it).
    """

    base_changed = Signal(object)  # LoadedModel
    adapter_changed = Signal(AdapterChange)

    def __init__(self) -> None:
        self._loaded: LoadedModel | None = None
        self._adapter: Adapter | None = None
        self._adapter_path: Path | None = None
        self._handle: AttachedPeft | None = None
        self._predictor: Any = None
        #: held while a model runs; an adapter switch waits for it (or, on the GUI thread, retries)
        self.lock = threading.RLock()
        self.decoder = LiveDecoder()
        self._reload = HotReload(lambda adapter, path: self.set_adapter(adapter, path, wait=False))
        self._last_adapter: Path | None = None  # the adapter file to go back to from the base model
        self._base_only = False
        self._frozen_stages = 0  # see frozen_stages; set whenever the model or adapter changes
        self._stage_count = 0  # the encoder's stages; a stage index equal to it means "past the last"
        self._precision_request = "auto"
        self._precision: Precision = FP32_CPU
        self._changes = 0  # counts changes of model, adapter and precision: embeddings of an older one are stale

    @property
    def loaded(self) -> LoadedModel | None:
        """The base model, or None before one is loaded."""
        return self._loaded

    @property
    def adapter(self) -> Adapter | None:
        """The attached adapter, or None (the base model alone)."""
        return self._adapter

    @property
    def adapter_path(self) -> Path | None:
        """The file the attached adapter was read from; None when detached or handed over as an object."""
        return self._adapter_path

    @property
    def predictor(self) -> Any:
        """segment_anything's ``SamPredictor`` of the model (with the adapter in it), or None."""
        return self._predictor

    @property
    def precision(self) -> Precision:
        """What the image encoder computes in (embeddings are stored and prompted in float32 either way)."""
        return self._precision

    @property
    def precision_request(self) -> str:
        """The precision asked for: ``"auto"`` takes what a probe of the model measured fastest."""
        return self._precision_request

    @property
    def version(self) -> int:
        """Goes up with every change of base model, adapter or precision (embeddings made before are stale)."""
        return self._changes

    @property
    def stage_count(self) -> int:
        """The model's encoder stages."""
        return self._stage_count

    def load(
        self,
        model: str | os.PathLike[str],
        device: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> LoadedModel:
        """Load a base model (registry name, file or 'demo') and make it the live one (see :meth:`set_base`).

        ``device`` is ``"cpu"``, ``"cuda"``, ``"mps"`` or None (the best available); ``progress`` is
        called with a line of text as loading goes on.
        """
        loaded = load_model(model, device=device, progress=progress)
        self.set_base(loaded)
        return loaded

    def embedding_precision(self, loaded: LoadedModel) -> Precision:
        """The precision ``loaded`` would embed in; may run the precision probe (about a second, once per
        machine and model), so call it on a worker thread and hand the result to :meth:`set_base`.

        Raises
        ------
        PrecisionNotAvailableError
            The model's device does not compute the requested precision natively.
        """
        return resolve_precision(self._precision_request, loaded.device, model_probe(loaded.sam), use="embed")

    def set_base(self, loaded: LoadedModel, precision: Precision | None = None) -> None:
        """Make ``loaded`` the live model, without an adapter; emits ``base_changed``.

        ``precision`` is :meth:`embedding_precision`'s answer for it (found here when not given).
        """
        from segment_anything import SamPredictor

        if precision is None:
            precision = self.embedding_precision(loaded)
        with self.lock:
            self._detach()
            self._reload.cancel()
            self._last_adapter, self._base_only = None, False
            self._loaded = loaded
            self._precision = precision
            self._predictor = SamPredictor(loaded.sam)
            self._predictor.model_type = loaded.architecture.name
            self._predictor.model_name = loaded.identity.name
            self._tag_predictor()
            self.decoder.base_changed()
            self._changes += 1
        self.base_changed.emit(loaded)

    def set_precision(self, requested: str) -> Precision:
        """Embed in ``requested`` (auto, fp32, bf16, fp16) from now on; later embeddings use new cache entries.

        Raises
        ------
        PrecisionNotAvailableError
            The model's device does not compute ``requested`` natively (the message lists what it does).
        """
        with self.lock:
            if self._loaded is not None:
                precision = resolve_precision(
                    requested, self._loaded.device, model_probe(self._loaded.sam), "embed"
                )
            else:
                precision = resolve_precision(requested, "cpu")
            self._precision_request, self._precision = requested, precision
            self._changes += 1
        return precision

    def require(self) -> LoadedModel:
        """The base model.

        Raises
        ------
        NoModelError
            No model is loaded yet.
        """
        if self._loaded is None:
            raise NoModelError(
                "No model is loaded yet: pick a model in the Segment widget and press 'Load model'."
            )
        return self._loaded

    @property
    def adapter_key(self) -> str:
        """The attached adapter's identity, or the base model's key without one."""
        return self._adapter.identity if self._adapter is not None else BASE_ADAPTER_KEY

    @property
    def frozen_stages(self) -> int:
        """Leading encoder stages the current adapter leaves untouched (all of them without one)."""
        self.require()
        return self._frozen_stages

    @property
    def embedding_adapter_key(self) -> str:
        """The adapter part of embedding keys: an adapter that leaves the encoder alone keeps the base's."""
        self.require()
        if self._handle is None or self._frozen_stages == self._stage_count:
            return BASE_ADAPTER_KEY
        return self.adapter_key

    @property
    def adapted(self) -> bool:
        """Whether an adapter is attached (embeddings then re-run only the stages it changed)."""
        return self._handle is not None

    def set_adapter(
        self,
        adapter: Adapter | str | os.PathLike[str] | None,
        path: str | os.PathLike[str] | None = None,
        *,
        wait: bool = True,
    ) -> Adapter | None:
        """Attach an adapter (object or ``.safetensors`` path) in place of the current one; None detaches.

        A bad or mismatched adapter raises and leaves the current one attached. With
        ``wait=False`` a model busy on a worker thread raises :class:`SessionBusyError` at
        once instead of blocking. Emits ``adapter_changed``.

        Returns
        -------
        Adapter or None
            The adapter now attached.
        """
        model = self.require()
        path = Path(path) if path is not None else None
        if adapter is not None and not isinstance(adapter, Adapter):
            path = Path(adapter)
            adapter = Adapter.load(path)
        if not self.lock.acquire(blocking=wait):
            raise SessionBusyError("The model is busy; the adapter will be attached when it is free.")
        try:
            if adapter is not None:
                adapter.check_base(model)  # before detaching the current one
            previous = (self._adapter, self._adapter_path)
            self._detach()
            if adapter is not None:
                try:
                    self._handle = adapter.attach_to(model)
                except Exception:
                    if previous[0] is not None:  # put the previous adapter back
                        self._handle = previous[0].attach_to(model)
                        self._adapter, self._adapter_path = previous
                        self._tag_predictor()
                    raise
            self._adapter, self._adapter_path = adapter, path
            if adapter is not None:
                self._base_only = False
                self._last_adapter = path or self._last_adapter
            self._tag_predictor()
            self.decoder.adapter_changed(adapter)
            self._changes += 1
        finally:
            self.lock.release()
        self.adapter_changed.emit(AdapterChange(adapter, path))
        return adapter

    def _detach(self) -> None:
        if self._handle is not None:
            self._handle.detach()
        self._handle, self._adapter, self._adapter_path = None, None, None

    def _tag_predictor(self) -> None:
        """micro_sam's embedding signature includes the predictor's hash: make it model + adapter."""
        if self._predictor is not None and self._loaded is not None:
            # derived once per model/adapter change, not on every embedding lookup
            self._stage_count = stage_count(self._loaded.sam)
            self._frozen_stages = (
                self._stage_count if self._handle is None else frozen_prefix_stages(self._loaded.sam)
            )
            tag_predictor(self._predictor, self._loaded, self.embedding_adapter_key)

    @property
    def reload_pending(self) -> Path | None:
        """The adapter file a hot reload waits to attach, or None."""
        return self._reload.pending

    @property
    def reloads(self) -> int:
        """Adapters attached by hot reloads since the session began."""
        return self._reload.attached

    @property
    def base_only(self) -> bool:
        """Whether the user switched to the base model for comparison (hot reloads then wait)."""
        return self._base_only

    def reload_adapter(self, path: str | os.PathLike[str], attach: bool = True) -> None:
        """Attach the adapter file a training run just wrote, as soon as it is read and the model is free.

        The file is read on a daemon thread; :meth:`finish_reload` attaches it. With ``attach`` False
        (live reload off), or while :attr:`base_only`, the file is only remembered for
        :meth:`use_base` ``(False)``.
        """
        self.require()
        self._last_adapter = Path(path)
        if attach and not self._base_only:
            self._reload.request(Path(path))

    def finish_reload(self, timeout: float | None = 0.0) -> ReloadState:
        """Attach the adapter :meth:`reload_adapter` asked for, if it is read (waiting up to ``timeout``
        seconds; None: until it is) and the model is free; otherwise say why not and call again later.

        Raises
        ------
        SamPeftError, OSError
            The file could not be read or does not fit; the request is dropped, the current adapter stays.
        """
        return self._reload.finish(timeout)

    def use_base(self, base: bool) -> None:
        """Segment with the base model alone (True) or with the last adapter again (False), to compare."""
        if base:
            if self._adapter_path is not None:
                self._last_adapter = self._adapter_path
            self._reload.cancel()
            self._base_only = True  # before the change is emitted: observers see the switch as it is
            self.set_adapter(None)
            return
        self._base_only = False
        if self._last_adapter is not None and self._adapter_path != self._last_adapter:
            self.set_adapter(self._last_adapter)
