"""Every private name of micro_sam, segment_anything, sam2 and torch this package uses, in one place.

None of these has a public API, and doing them differently would make our files or tensors
differ from micro_sam's own, or cost what the private route saves. Checked against micro_sam
1.8.14 and torch 2.14 (the tests' environment); when one of them changes, this module is the
only place to adapt, and ``tests/core/sam/test_internals.py`` keeps every other module off
their private names (and off ``__class__`` assignment).

micro_sam:

- ``_to_image``: turns a greyscale, two-channel or RGB image into the 3-channel uint8 array
  (each channel min-max scaled to 0-255) that micro_sam's predictor embeds. Training must
  preprocess exactly as the annotator does, or the adapter learns on inputs it never sees.
- ``_load_checkpoint``: reads micro_sam's own registry files, some of which pickle training
  metadata beside the weights. Used only for files whose hash micro_sam's downloader checked.
- ``_create_dataset_with_data`` and ``_write_embedding_signature``: write an embedding entry
  (features plus the signature attributes micro_sam checks on reading) in micro_sam's zarr
  format, zarr 2 and 3 alike, so entries computed from a kept stage input are served by
  ``precompute_image_embeddings`` like those it wrote itself.
- ``_hash`` of a micro_sam predictor: the model id micro_sam writes into an embedding entry's
  signature and checks on reading; we set it to the base model plus adapter, so an entry of
  the base model is never served to an adapted one (:func:`tag_predictor_model`).
- ``_forward_impl`` of micro_sam's UNETR instance decoder: its forward pass on embeddings
  without the resize to the input image, which training on a crop of the embedding grid needs
  (:func:`unetr_forward_on_embeddings`).

- ``_predictor`` and ``_to_mask_data`` of micro_sam's ``AutomaticMaskGenerator``, and its ``_process_batch``
  overridden: the fast generator drops masks below the IoU threshold before micro_sam upscales and
  encodes them, then hands the rest to micro_sam's own ``_to_mask_data``
  (:func:`filtered_mask_generator`, used by ``core.annotation.automatic``).

- ``_cached_input`` and ``_cached_original_size`` of micro_sam's bioimage.io ``PredictorAdaptor``: its
  ``__init__`` builds one of the registry's 1024 px models, so a package of any other SAM (LiteMedSAM, the
  demo model) makes the adaptor without it and sets the attributes ``__init__`` sets, these two included
  (:func:`predictor_adaptor_around`).

torch:

- ``torch.cpu._is_avx512_bf16_supported`` and ``_is_amx_tile_supported``: whether the CPU has
  native bfloat16 (:func:`cpu_has_native_bf16`); torch has no public question for it.
- ``Tensor._version``: the in-place version counter, so an adapter's identity hash is kept until
  a tensor changes (:func:`tensor_version`).

sam2 (Meta's package):

- ``_get_pos_embed`` of the Hiera trunk: its position embedding for a grid, which the trunk's own forward
  adds after the patch embedding; the frozen-prefix cache runs that stem as a stage of its own
  (:func:`hiera_position_embedding`, used by ``core.sam.hiera_stages``).
- ``_prepare_backbone_features`` of ``SAM2Base``: flattens an image's backbone features the way every
  SAM 2 path reads them; the video predictor on stored embeddings hands its frames' features to it
  (:func:`sam2_frame_features`, used by ``core.volume.memory_propagation``).

Python, on segment_anything's, MobileSAM's and sam2's modules:

- ``module.__class__ = ...``: swaps a module's forward for a subclass that computes the same
  thing with the same parameters (chunked ViT attention; TinyViT attention with grouped qkv; SAM 2.1
  behind SAM's interface, ``sam2_as_sam``), in place, so state dicts, hooks and PEFT wrappers see the
  original module (:func:`swap_class`).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_image(image: np.ndarray) -> np.ndarray:
    """The (H, W, 3) uint8 array micro_sam embeds for a 2D image (greyscale, 2-channel or RGB), each
    channel min-max scaled to 0-255."""
    from micro_sam.util import _to_image

    return _to_image(image)


def load_checkpoint(path: str) -> object:
    """What a micro_sam registry file holds, as ``torch.load`` gives it (unpickles its metadata:
    trusted files only); ``loading.sam_state_from`` unwraps the SAM state dict."""
    from micro_sam.util import _load_checkpoint

    raw, _ = _load_checkpoint(path)
    return raw


def write_embedding_entry(
    group: Any,
    features: np.ndarray,
    image: np.ndarray,
    predictor: Any,
    input_size: list[int],
    original_size: list[int],
) -> None:
    """Write whole-image ``features`` and micro_sam's embedding signature into a zarr ``group``."""
    from micro_sam.util import _create_dataset_with_data, _write_embedding_signature

    _create_dataset_with_data(group, "features", data=features)
    _write_embedding_signature(
        group,
        image,
        predictor,
        tile_shape=None,
        halo=None,
        input_size=input_size,
        original_size=original_size,
    )


def tag_predictor_model(predictor: Any, model_id: str) -> None:
    """Set the model id micro_sam records in (and checks on) a predictor's embedding entries."""
    predictor._hash = model_id


def unetr_forward_on_embeddings(decoder: Any, embeddings: Any) -> Any:
    """micro_sam's UNETR decoder on image-encoder ``embeddings`` (any crop of the grid), unresized."""
    return decoder._forward_impl(embeddings)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), not by emulation."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def tensor_version(tensor: Any) -> int:
    """``tensor``'s in-place version counter (it grows with every in-place change)."""
    return int(tensor._version)


def swap_class(module: Any, cls: type) -> None:
    """Make ``module`` an instance of ``cls`` in place (a subclass, or the original class back)."""
    module.__class__ = cls


def hiera_position_embedding(trunk: Any, grid: Any) -> Any:
    """``Hiera._get_pos_embed``: the trunk's position embedding for a (H, W) grid of patches."""
    return trunk._get_pos_embed(grid)


def sam2_frame_features(predictor: Any, backbone_out: dict) -> tuple:
    """``SAM2Base._prepare_backbone_features``: a frame's (backbone dict, flattened features, positions,
    sizes), as SAM 2's video predictor's ``_get_image_feature`` hands them on."""
    return predictor._prepare_backbone_features(backbone_out)


def predictor_adaptor_around(sam: Any) -> Any:
    """micro_sam's bioimage.io ``PredictorAdaptor`` (prompts in; masks, scores, embeddings out) around ``sam``."""
    from micro_sam.bioimageio.predictor_adaptor import PredictorAdaptor
    from segment_anything import SamPredictor
    from torch import nn

    adaptor = PredictorAdaptor.__new__(PredictorAdaptor)
    nn.Module.__init__(adaptor)  # PredictorAdaptor's own __init__ builds one of the registry's models
    adaptor.sam_model = sam
    adaptor.sam = SamPredictor(sam)
    adaptor.decoder = None
    adaptor._cached_input = None
    adaptor._cached_original_size = None
    return adaptor


#: points the fast mask generator decodes at once on a CPU (micro_sam: 64; fewer, larger operations)
CPU_POINTS_PER_BATCH = 256


def filtered_mask_generator(
    predictor: Any,
    pred_iou_thresh: float,
    points_per_side: int,
    autocast: Any = None,
    points_per_batch: Any = None,
) -> Any:
    """micro_sam's ``AutomaticMaskGenerator``, made fast on a CPU without changing what it keeps.

    micro_sam's generator decodes three masks per grid point, upscales every one to the image's size,
    scores its stability and run-length encodes it, and only then (in ``generate``) drops the masks whose
    predicted IoU is below the threshold. On a CPU the upscaling and encoding of masks that will be
    dropped cost more than the decoder (a 32 x 32 grid is 3,072 masks). This one

    - drops the masks below ``pred_iou_thresh`` (which must be the value later given to ``generate``)
      right after the decoder, at its low resolution: ``generate`` would drop exactly these;
    - decodes ``points_per_batch`` points at once (``CPU_POINTS_PER_BATCH`` on a CPU, micro_sam's 64
      elsewhere);
    - decodes in the context ``autocast()`` makes (a precision's ``autocast``; None: float32).

    Everything after the decoder is micro_sam's (stability, boxes, NMS, the instance segmentation).
    micro_sam is imported here, on use (it loads napari)."""
    from contextlib import nullcontext

    import torch
    from micro_sam.instance_segmentation import AutomaticMaskGenerator

    class FilteredMaskGenerator(AutomaticMaskGenerator):
        """An ``AutomaticMaskGenerator`` that keeps only the masks ``generate(pred_iou_thresh=...)`` would keep.

        ``pred_iou_thresh`` must be the value later given to ``generate``; ``autocast`` makes the context the
        decoder runs in (a precision's ``autocast`` method; None: float32).
        """

        def __init__(
            self,
            predictor: Any,
            pred_iou_thresh: float,
            points_per_side: int,
            autocast: Any = None,
            points_per_batch: int | None = None,
        ) -> None:
            if points_per_batch is None and str(predictor.device) == "cpu":
                points_per_batch = CPU_POINTS_PER_BATCH
            super().__init__(predictor, points_per_side=points_per_side, points_per_batch=points_per_batch)
            self._keep_iou = pred_iou_thresh
            self._autocast = autocast

        def _process_batch(self, points: np.ndarray, im_size: Any, crop_box: Any, original_size: Any) -> Any:
            predictor = self._predictor
            model = predictor.model
            coords = torch.as_tensor(
                predictor.transform.apply_coords(points, im_size), device=predictor.device, dtype=torch.float
            )[:, None, :]
            labels = torch.ones(coords.shape[:2], dtype=torch.int, device=coords.device)
            with torch.no_grad(), self._autocast() if self._autocast is not None else nullcontext():
                sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
                low_res, iou = model.mask_decoder(
                    image_embeddings=predictor.features,
                    image_pe=model.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=True,
                )
            keep = iou.float() > self._keep_iou  # (points, 3): what generate() would keep
            kept_points = np.repeat(points, iou.shape[1], axis=0)[keep.flatten().cpu().numpy()]
            masks = model.postprocess_masks(
                low_res[keep][:, None].float(), predictor.input_size, predictor.original_size
            )
            return self._to_mask_data(
                masks, iou[keep][:, None].float(), crop_box, original_size, points=kept_points
            )

    return FilteredMaskGenerator(predictor, pred_iou_thresh, points_per_side, autocast, points_per_batch)
