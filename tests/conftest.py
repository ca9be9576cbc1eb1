"""Shared fixtures: small SAM-architecture models that run in milliseconds."""

from __future__ import annotations

import pytest
import torch

from napari_sam_peft.core.sam.architecture import TINY, build_sam
from napari_sam_peft.core.sam.loading import LoadedModel, model_identity

#: fixtures that give a test a real napari viewer (directly or through another fixture)
VIEWER_FIXTURES = {"make_napari_viewer", "make_napari_viewer_proxy", "qtbot"}


def pytest_collection_modifyitems(items):
    """Every test with a napari viewer is marked ``gui`` (``-m "not gui"`` runs without an X server)."""
    for item in items:
        if VIEWER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)


@pytest.fixture(autouse=True, scope="session")
def _probe_cache(tmp_path_factory):
    """One precision-probe cache for the whole run (each model is probed once), never the user's."""
    patch = pytest.MonkeyPatch()
    patch.setenv("NAPARI_SAM_PEFT_PROBE_CACHE", str(tmp_path_factory.mktemp("probe") / "probe.json"))
    yield
    patch.undo()


@pytest.fixture
def tiny_sam():
    """A randomly initialised SAM of the TINY architecture (4 blocks, width 32), seeded."""
    torch.manual_seed(0)
    return build_sam(TINY)


@pytest.fixture
def tiny_sam2():
    """A randomly initialised SAM 2.1 of the TINY_HIERA architecture (128 px, 5 Hiera blocks), seeded."""
    from napari_sam_peft.core.sam.hiera_architecture import TINY_HIERA

    torch.manual_seed(0)
    return build_sam(TINY_HIERA)


@pytest.fixture
def tiny_model(tiny_sam) -> LoadedModel:
    return LoadedModel(sam=tiny_sam, identity=model_identity(tiny_sam, "tiny"), architecture=TINY, source="test")


def _is_sam2(model) -> bool:
    return hasattr(model, "sam_mask_decoder")


def sam2_image_features(model, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """SAM 2's image embedding and high-resolution features, as its image predictor computes them."""
    backbone_out = model.forward_image(image)
    _, vision_feats, _, feat_sizes = model._prepare_backbone_features(backbone_out)
    vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
    feats = [
        feat.permute(1, 2, 0).reshape(image.shape[0], -1, *size)
        for feat, size in zip(vision_feats[::-1], feat_sizes[::-1], strict=True)
    ][::-1]
    return feats[-1], feats[:-1]


def _sam2_decode(model, image, points, labels, box, multimask):
    embedding, high_res = sam2_image_features(model, image)
    if box is not None:  # as SAM 2's image predictor prompts a box: its corners as points 2 and 3
        corners, corner_labels = box.reshape(-1, 2, 2), torch.tensor([[2, 3]])
        points = corners if points is None else torch.cat([corners, points], 1)
        labels = corner_labels if labels is None else torch.cat([corner_labels, labels], 1)
    sparse, dense = model.sam_prompt_encoder(
        points=(points, labels) if points is not None else None, boxes=None, masks=None
    )
    masks, iou, _, _ = model.sam_mask_decoder(
        image_embeddings=embedding,
        image_pe=model.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=False,
        high_res_features=high_res,
    )
    return masks, iou


def sam_forward(sam, image_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Run a SAM (or SAM 2.1) model end to end on a fixed random image with a point and a box prompt."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, image_size, image_size, generator=generator) * 255
    points = torch.tensor([[[image_size * 0.4, image_size * 0.5]]])
    box = torch.tensor([[2.0, 3.0, image_size * 0.7, image_size * 0.6]])
    if _is_sam2(sam):
        with torch.no_grad():
            masks, iou = _sam2_decode(sam, image / 255, points, torch.ones(1, 1), box, multimask=True)
        return {"masks": masks, "iou": iou}
    batched = [
        {
            "image": image[0],
            "original_size": (image_size, image_size),
            "point_coords": points,
            "point_labels": torch.ones(1, 1),
            "boxes": box,
        }
    ]
    with torch.no_grad():
        out = sam(batched, multimask_output=True)[0]
    return {"masks": out["low_res_logits"], "iou": out["iou_predictions"]}


def sam_train_loss(sam, image_size: int, seed: int = 0) -> torch.Tensor:
    """A differentiable loss through encoder, prompt encoder and decoder (Sam.forward is no_grad)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, image_size, image_size, generator=generator)
    box = torch.tensor([[2.0, 3.0, image_size * 0.7, image_size * 0.6]])
    if _is_sam2(sam):
        masks, iou = _sam2_decode(sam, image, None, None, box, multimask=False)
    else:
        embeddings = sam.image_encoder(image)
        sparse, dense = sam.prompt_encoder(points=None, boxes=box, masks=None)
        masks, iou = sam.mask_decoder(
            image_embeddings=embeddings,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
    target = (torch.rand(masks.shape, generator=generator) > 0.5).float()
    return torch.nn.functional.binary_cross_entropy_with_logits(masks, target) + iou.square().mean()
