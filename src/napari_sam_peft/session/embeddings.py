"""The session's image embeddings: the cache, and kept block-k inputs for fast reloads.

After an adapter reload, an image whose block-k input is kept is re-embedded by running only the
encoder stages the adapter changed. The shown image's embeddings are its annotator's
(:mod:`.image_annotator`, :mod:`.volume_annotator`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache, EmbeddingKey, model_key
from napari_sam_peft.core.annotation.images import check_image, image_content_hash
from napari_sam_peft.core.annotation.progress import ProgressCallback
from napari_sam_peft.core.sam.stages import StageInputCapture, run_stages

from .live_model import LiveModel

STAGE_INPUTS_KEPT = 8  # block-k inputs kept in memory (about 13 MB each for vit_b)

StageInputKey = tuple[str, str, str, int]  # image hash, model key, precision, stage
KeptStageInput = tuple[Any, tuple[int, int], tuple[int, int]]  # block-k input, input size, original size
Embedded = tuple[EmbeddingKey, dict]  # the embeddings' key and micro_sam's embeddings dict


class SessionEmbeddings:
    """Embeddings for the live model: cached on disk, re-run from a kept stage input after a reload."""

    def __init__(self, model: LiveModel, cache: EmbeddingCache | None = None) -> None:
        self._model = model
        self._cache = cache
        self._stage_inputs: OrderedDict[StageInputKey, KeptStageInput] = OrderedDict()
        self._reload_stage: int | None = None
        self.reembedded_from_stage = 0  # embeddings computed from a kept block-k input

    @property
    def cache(self) -> EmbeddingCache:
        """The embedding cache (the default folder unless one was given)."""
        if self._cache is None:
            self._cache = EmbeddingCache()
        return self._cache

    def key(self, image: np.ndarray, tiled: bool = True) -> EmbeddingKey:
        """What ``image``'s embeddings depend on with the current model, adapter and precision.

        ``tiled`` False: one whole-image embedding however large (a volume's slices, as micro_sam's
        annotator_3d embeds them).
        """
        loaded = self._model.require()
        tile, halo = self._model.tiling_for(image) if tiled else (None, None)
        return EmbeddingKey(
            image_hash=image_content_hash(image),
            model_key=model_key(loaded),
            adapter_key=self._model.embedding_adapter_key,
            tile_shape=tile,
            halo=halo,
            precision=self._model.precision.name,
        )

    def prepare_reloads(self, stage: int | None) -> None:
        """Keep the input of encoder stage ``stage`` while embedding with the base model (the first stage
        a training run adapts), so even the first reloaded adapter re-embeds quickly; None: stop."""
        self._reload_stage = stage

    def compute(
        self, image: np.ndarray, rgb: bool | None = None, progress: ProgressCallback | None = None
    ) -> Embedded:
        """Embeddings of ``image`` for the current model and adapter, from the cache when possible.

        ``image`` is greyscale (H, W) or RGB (H, W, 3); ``rgb`` is napari's ``layer.rgb`` (None: a
        last axis of 3 is colour). Takes the model's lock: call it on a worker thread.

        Returns
        -------
        tuple
            The embeddings' key and micro_sam's embeddings dict.
        """
        return self._compute(check_image(image, rgb), progress)

    def compute_slice(self, volume: Any, z: int, progress: ProgressCallback | None = None) -> Embedded:
        """Embeddings of slice ``z`` of a volume (only that slice is read), from the cache when possible.

        Each slice is an entry of its own, keyed by its pixels, so a slice embedded once is never
        embedded again with the same model, adapter and precision. Blank slices are allowed (micro_sam
        normalises each slice on its own). Takes the model's lock: call it on a worker thread.
        """
        from napari_sam_peft.core.volume.volumes import volume_slice

        return self._compute(volume_slice(volume, z), progress, tiled=False)

    def _compute(self, image: np.ndarray, progress: ProgressCallback | None, tiled: bool = True) -> Embedded:
        model = self._model
        with model.lock:
            key = self.key(image, tiled)
            stage = model.frozen_stages if model.adapted else self._reload_stage
            reusable = key.tile_shape is None and stage is not None and 0 < stage < model.stage_count
            sam = model.require().sam
            encoder = model.precision.encoder(sam.image_encoder)
            if key in self.cache or not reusable:
                with encoder:
                    return key, self.cache.get_or_compute(model.predictor, image, key, progress=progress)
            assert stage is not None
            stage_key = (key.image_hash, key.model_key, key.precision, stage)
            kept = self._stage_inputs.get(stage_key)
            if kept is not None:
                self._embed_from_stage(image, key, stage, kept, progress)
                return key, self.cache.get_or_compute(model.predictor, image, key)
            with StageInputCapture(sam, stage) as capture, encoder:
                embeddings = self.cache.get_or_compute(model.predictor, image, key, progress=progress)
            if capture.captured is not None:
                input_sizes = (embeddings["input_size"], embeddings["original_size"])
                self._keep_stage_input(stage_key, (capture.captured, *input_sizes))
        return key, embeddings

    def keep_stage_input(self, image: np.ndarray, stage: int, rgb: bool | None = None) -> None:
        """Run the encoder up to ``stage`` on ``image`` and keep the result for fast re-embedding.

        The Finetune widget calls this for the shown image when a run starts (on a worker thread).
        """
        import torch
        from segment_anything.utils.transforms import ResizeLongestSide

        from napari_sam_peft.core.sam.preprocessing import model_input

        image = check_image(image, rgb)
        model = self._model
        loaded = model.require()
        if model.tiling_for(image)[0] is not None or not 0 < stage < model.stage_count:
            return
        key = (image_content_hash(image), model_key(loaded), model.precision.name, stage)
        if key in self._stage_inputs:
            return
        with model.lock, torch.no_grad(), model.precision.autocast():
            stage_input = run_stages(loaded.sam.image_encoder, model_input(loaded.sam, image), 0, stage).cpu()
        original = (int(image.shape[0]), int(image.shape[1]))
        input_size = ResizeLongestSide.get_preprocess_shape(*original, loaded.architecture.img_size)
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
        loaded = self._model.require()
        if progress:
            progress(0, 1)
        with torch.no_grad(), self._model.precision.autocast():
            features = run_stages(loaded.sam.image_encoder, stage_input.to(loaded.device), stage)
        features_np = features.float().cpu().numpy()
        embeddings = {"features": features_np, "input_size": input_size, "original_size": original_size}
        self.cache.store(self._model.predictor, image, key, embeddings)
        self.reembedded_from_stage += 1
        if progress:
            progress(1, 1)
