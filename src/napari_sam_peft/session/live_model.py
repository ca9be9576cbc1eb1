"""The model a session segments with: base model, active adapter, predictor and embeddings.

Adapters written by the training worker are attached in place, so the next prompt uses
them without reloading the base model, and the current image is re-embedded from its kept
block-k input. Methods that run models take a lock, so an adapter switch cannot happen
half-way through an embedding computed on a worker thread.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from napari_sam_peft.core.annotation.commits import keep_object_components
from napari_sam_peft.core.annotation.embeddings import (
    BASE_ADAPTER_KEY,
    EmbeddingCache,
    EmbeddingKey,
    model_key,
    tag_predictor,
    tiling_for,
)
from napari_sam_peft.core.annotation.images import check_image, image_content_hash
from napari_sam_peft.core.annotation.progress import ProgressCallback
from napari_sam_peft.core.annotation.prompting import ObjectPrompts, segment_objects
from napari_sam_peft.core.peft import Adapter, AttachedPeft, frozen_prefix_stages
from napari_sam_peft.core.sam.loading import LoadedModel, load_model
from napari_sam_peft.core.sam.precision import FP32_CPU, Precision, resolve_precision
from napari_sam_peft.core.sam.precision_probe import model_probe
from napari_sam_peft.core.sam.stages import StageInputCapture, run_stages, stage_count

from .errors import NoModelError, SessionBusyError
from .events import AdapterChange

STAGE_INPUTS_KEPT = 8  # block-k inputs kept in memory (about 13 MB each for vit_b)

StageInputKey = tuple[str, str, int]  # image hash, model key, stage
KeptStageInput = tuple[Any, tuple[int, int], tuple[int, int]]  # block-k input, input size, original size


class LiveModel:
    """Base model, active adapter, predictor and embedding cache, with a signal for each change."""

    model_changed = Signal(object)  # LoadedModel
    adapter_changed = Signal(AdapterChange)

    def __init__(self, cache: EmbeddingCache | None = None) -> None:
        self._cache = cache
        self.model: LoadedModel | None = None
        self.adapter: Adapter | None = None
        self.adapter_path: Path | None = None
        self._handle: AttachedPeft | None = None
        self.predictor: Any = None
        self.lock = threading.RLock()
        #: encoder stage whose input to keep while embedding with the base model (the Finetune
        #: widget sets it to the first stage its run adapts, so the first reload is fast too)
        self.stage_hint: int | None = None
        self._stage_inputs: OrderedDict[StageInputKey, KeptStageInput] = OrderedDict()
        self.reembedded_from_stage = 0  # embeddings computed from a kept block-k input
        self._frozen_stages = 0  # see frozen_stages; set whenever the model or adapter changes
        self._stage_count = 0  # the model's encoder stages; a stage index equal to it means "past the last"
        #: what the image encoder computes in: "auto" takes what a probe of the model measured fastest
        #: (see ``core.sam.precision``); embeddings are stored and prompted in float32 either way
        self.precision_request = "auto"
        self.precision: Precision = FP32_CPU

    @property
    def cache(self) -> EmbeddingCache:
        """The embedding cache (the default folder unless one was given)."""
        if self._cache is None:
            self._cache = EmbeddingCache()
        return self._cache

    def load_model(
        self,
        model: str | os.PathLike[str],
        device: str | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> LoadedModel:
        """Load a base model (registry name, file or 'demo') and make it the session's model.

        Parameters
        ----------
        model
            A registry name, a checkpoint file or ``"demo"``.
        device
            ``"cpu"``, ``"cuda"``, ``"mps"`` or None (the best available).
        progress
            Called with a line of text as loading goes on.

        Returns
        -------
        LoadedModel
            The model, now the session's.
        """
        loaded = load_model(model, device=device, progress=progress)
        self.set_model(loaded)
        return loaded

    def embedding_precision(self, loaded: LoadedModel) -> Precision:
        """The precision ``loaded`` would embed in; may run the precision probe (about a second, once per
        machine and model), so call it on a worker thread and hand the result to :meth:`set_model`.

        Raises
        ------
        PrecisionNotAvailableError
            The model's device does not compute the requested precision natively.
        """
        return resolve_precision(self.precision_request, loaded.device, model_probe(loaded.sam), use="embed")

    def set_model(self, loaded: LoadedModel, precision: Precision | None = None) -> None:
        """Make ``loaded`` the session's model, without an adapter; emits ``model_changed``.

        ``precision`` is :meth:`embedding_precision`'s answer for it (found here when not given).
        """
        from segment_anything import SamPredictor

        if precision is None:
            precision = self.embedding_precision(loaded)  # raises before anything changes
        with self.lock:
            self._detach()
            self.model = loaded
            self.precision = precision
            self._stage_inputs.clear()
            self.predictor = SamPredictor(loaded.sam)
            self.predictor.model_type = loaded.architecture.name
            self.predictor.model_name = loaded.identity.name
            self._tag_predictor()
        self.model_changed.emit(loaded)  # implies "no adapter": a new model starts without one

    def set_precision(self, requested: str) -> Precision:
        """Embed in ``requested`` (auto, fp32, bf16, fp16) from now on; later embeddings use new cache entries.

        Raises
        ------
        PrecisionNotAvailableError
            The model's device does not compute ``requested`` natively (the message lists what it does).
        """
        with self.lock:
            if self.model is not None:
                precision = resolve_precision(requested, self.model.device, model_probe(self.model.sam), "embed")
            else:
                precision = resolve_precision(requested, "cpu")
            self.precision_request, self.precision = requested, precision
            self._stage_inputs.clear()  # kept in the previous precision
        return precision

    def require_model(self) -> LoadedModel:
        """The session's model.

        Raises
        ------
        NoModelError
            No model is loaded yet.
        """
        if self.model is None:
            raise NoModelError(
                "No model is loaded yet: pick a model in the Segment widget and press 'Load model'."
            )
        return self.model

    @property
    def adapter_key(self) -> str:
        """The attached adapter's identity, or the base model's key without one."""
        return self.adapter.identity if self.adapter is not None else BASE_ADAPTER_KEY

    @property
    def frozen_stages(self) -> int:
        """Leading encoder stages the current adapter leaves untouched (all of them without one)."""
        self.require_model()
        return self._frozen_stages

    @property
    def embedding_adapter_key(self) -> str:
        """The adapter part of embedding keys: an adapter that leaves the encoder alone keeps the base's."""
        self.require_model()
        if self._handle is None or self.frozen_stages == self._stage_count:
            return BASE_ADAPTER_KEY
        return self.adapter_key

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
        once instead of blocking (the GUI thread retries later). Emits ``adapter_changed``.

        Returns
        -------
        Adapter or None
            The adapter now attached.
        """
        model = self.require_model()
        path = Path(path) if path is not None else None
        if adapter is not None and not isinstance(adapter, Adapter):
            path = Path(adapter)
            adapter = Adapter.load(path)
        if not self.lock.acquire(blocking=wait):
            raise SessionBusyError("The model is busy; the adapter will be attached when it is free.")
        try:
            if adapter is not None:
                adapter.check_base(model)  # before detaching the current one
            previous = (self.adapter, self.adapter_path)
            self._detach()
            if adapter is not None:
                try:
                    self._handle = adapter.attach_to(model)
                except Exception:
                    if previous[0] is not None:  # put the previous adapter back
                        self._handle = previous[0].attach_to(model)
                        self.adapter, self.adapter_path = previous
                        self._tag_predictor()
                    raise
            self.adapter, self.adapter_path = adapter, path
            self._tag_predictor()
        finally:
            self.lock.release()
        self.adapter_changed.emit(AdapterChange(adapter, path))
        return adapter

    def _detach(self) -> None:
        if self._handle is not None:
            self._handle.detach()
        self._handle = None
        self.adapter = None
        self.adapter_path = None

    def _tag_predictor(self) -> None:
        """micro_sam's embedding signature includes the predictor's hash: make it model + adapter."""
        if self.predictor is not None and self.model is not None:
            # derived once per model/adapter change, not on every embedding lookup
            self._stage_count = stage_count(self.model.sam)
            self._frozen_stages = (
                self._stage_count if self._handle is None else frozen_prefix_stages(self.model.sam)
            )
            tag_predictor(self.predictor, self.model, self.embedding_adapter_key)

    def tiling_for(self, image: np.ndarray) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """Tile images larger than twice the model's input size; each tile+halo is one model input."""
        return tiling_for(image.shape, self.require_model().architecture.img_size)

    def embedding_key(self, image: np.ndarray) -> EmbeddingKey:
        """What ``image``'s embeddings depend on with the current model and adapter."""
        model = self.require_model()
        tile, halo = self.tiling_for(image)
        return EmbeddingKey(
            image_hash=image_content_hash(image),
            model_key=model_key(model),
            adapter_key=self.embedding_adapter_key,
            tile_shape=tile,
            halo=halo,
            precision=self.precision.name,
        )

    def compute_embeddings(
        self, image: np.ndarray, rgb: bool | None = None, progress: ProgressCallback | None = None
    ) -> tuple[EmbeddingKey, dict]:
        """Embeddings of ``image`` for the current model and adapter, from the cache when possible.

        ``image`` is greyscale (H, W) or RGB (H, W, 3); ``rgb`` is napari's ``layer.rgb`` (None: a
        last axis of 3 is colour). After an adapter reload, an image whose block-k input is kept is
        re-embedded by running only the encoder stages the adapter changed.

        Returns
        -------
        tuple
            The embeddings' key and micro_sam's embeddings dict.
        """
        image = check_image(image, rgb)
        with self.lock:
            key = self.embedding_key(image)
            stage = self.frozen_stages if self._handle is not None else self.stage_hint
            reusable = key.tile_shape is None and stage is not None and 0 < stage < self._stage_count
            encoder = self.precision.encoder(self.require_model().sam.image_encoder)
            if key in self.cache or not reusable:
                with encoder:
                    return key, self.cache.get_or_compute(self.predictor, image, key, progress=progress)
            assert stage is not None
            kept = self._stage_inputs.get((key.image_hash, key.model_key, stage))
            if kept is not None:
                self._embed_from_stage(image, key, stage, kept, progress)
                return key, self.cache.get_or_compute(self.predictor, image, key)
            with StageInputCapture(self.require_model().sam, stage) as capture, encoder:
                embeddings = self.cache.get_or_compute(self.predictor, image, key, progress=progress)
            if capture.captured is not None:
                self._keep_stage_input(
                    (key.image_hash, key.model_key, stage),
                    (capture.captured, embeddings["input_size"], embeddings["original_size"]),
                )
        return key, embeddings

    def keep_stage_input(self, image: np.ndarray, stage: int, rgb: bool | None = None) -> None:
        """Run the encoder up to ``stage`` on ``image`` and keep the result for fast re-embedding.

        The Finetune widget calls this when a run starts, so even the first reloaded adapter
        re-embeds the current image with the adapted blocks only.
        """
        import torch
        from segment_anything.utils.transforms import ResizeLongestSide

        from napari_sam_peft.core.sam.preprocessing import model_input

        image = check_image(image, rgb)
        model = self.require_model()
        if tiling_for(image.shape, model.architecture.img_size)[0] is not None:
            return
        if not 0 < stage < self._stage_count:
            return
        key = (image_content_hash(image), model_key(model), stage)
        if key in self._stage_inputs:
            return
        with self.lock, torch.no_grad(), self.precision.autocast():
            stage_input = run_stages(model.sam.image_encoder, model_input(model.sam, image), 0, stage).cpu()
        original = (int(image.shape[0]), int(image.shape[1]))
        input_size = ResizeLongestSide.get_preprocess_shape(*original, model.architecture.img_size)
        self._keep_stage_input(key, (stage_input, input_size, original))

    def _keep_stage_input(self, key: StageInputKey, value: KeptStageInput) -> None:
        self._stage_inputs[key] = value
        self._stage_inputs.move_to_end(key)
        while len(self._stage_inputs) > STAGE_INPUTS_KEPT:
            self._stage_inputs.popitem(last=False)

    def _embed_from_stage(
        self,
        image: np.ndarray,
        key: EmbeddingKey,
        stage: int,
        kept: KeptStageInput,
        progress: ProgressCallback | None,
    ) -> None:
        import torch

        stage_input, input_size, original_size = kept
        sam = self.require_model().sam
        if progress:
            progress(0, 1)
        with torch.no_grad(), self.precision.autocast():
            features = run_stages(sam.image_encoder, stage_input.to(self.require_model().device), stage)
        features_np = features.float().cpu().numpy()
        embeddings = {"features": features_np, "input_size": input_size, "original_size": original_size}
        self.cache.store(self.predictor, image, key, embeddings)
        self.reembedded_from_stage += 1
        if progress:
            progress(1, 1)

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
