"""RGB images (H, W, 3), uint8 and float: embeddings, prompts, automatic segmentation, training, evaluation.

micro_sam takes an array's ndim as its dimensionality unless told, so an RGB image used to be
embedded as a stack of H planes and crashed ("could not broadcast input array ..."). These tests
run what a user does with a colour image, with the bundled demo model (quality) or the TINY one
(mechanics), and check that greyscale and the same image as 3 identical channels agree.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_sam_peft.core.annotation.embeddings import EmbeddingCache
from napari_sam_peft.core.annotation.images import InvalidImageError, check_image
from napari_sam_peft.core.annotation.prompting import ObjectPrompts
from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.sam.architecture import TINY
from napari_sam_peft.core.sam.loading import load_model
from napari_sam_peft.session import AnnotatorSession


def stacked(grey: np.ndarray) -> np.ndarray:
    """The greyscale image as 3 identical channels."""
    return np.stack([grey] * 3, axis=-1)


def colour(grey: np.ndarray) -> np.ndarray:
    """A colour image whose channels differ: the image, a gamma-brightened and a blurred copy."""
    gamma = (255 * (grey.astype(np.float32) / 255) ** 0.6).astype(np.uint8)
    return np.stack([grey, gamma, ndimage.uniform_filter(grey, 5)], axis=-1)


def as_float(image: np.ndarray) -> np.ndarray:
    """A float image in 0..1, as napari holds float RGB."""
    return image.astype(np.float32) / 255


#: name -> (image from a greyscale uint8 image, min mean box IoU with the demo model)
VARIANTS = {
    "grey-uint8": (lambda g: g, 0.9),
    "stacked-uint8": (stacked, 0.9),
    "stacked-float64": (lambda g: stacked(g).astype(np.float64) / 255, 0.9),
    "colour-uint8": (colour, 0.5),
    "colour-float32": (lambda g: as_float(colour(g)), 0.5),
}
RGB_VARIANTS = [name for name in VARIANTS if not name.startswith("grey")]

NUCLEI = make_sample("nuclei", seed=0, shape=(128, 128))  # 5 nuclei; the demo model's domain
SMALL = make_sample("nuclei", seed=0, shape=(64, 64)).image  # TINY's input size


def variant(name: str, grey: np.ndarray) -> np.ndarray:
    return VARIANTS[name][0](grey)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These small models run many times faster on one thread than on two busy shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo_model():
    return load_model("demo", device="cpu")


@pytest.fixture
def demo(demo_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(demo_model)
    return session


@pytest.fixture
def tiny(tiny_model, tmp_path):
    session = AnnotatorSession(cache=EmbeddingCache(tmp_path / "cache"))
    session.model.set_base(tiny_model)
    return session


def _box(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([rows.min(), cols.min(), rows.max(), cols.max()])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


# ------------------------------------------------------------------ images
@pytest.mark.parametrize("name", RGB_VARIANTS)
def test_rgb_images_pass_the_check_unchanged(name):
    image = variant(name, SMALL)
    checked = check_image(image, rgb=True)
    assert checked.shape == (64, 64, 3) and checked.dtype == image.dtype


def test_a_uniform_colour_is_refused_as_blank():
    image = np.zeros((16, 16, 3), np.uint8) + np.array([10, 200, 30], np.uint8)
    with pytest.raises(InvalidImageError, match="uniform colour"):
        check_image(image, rgb=True)


# -------------------------------------------------------------- embeddings
@pytest.mark.parametrize("name", RGB_VARIANTS)
def test_rgb_embeddings_have_the_shape_of_a_2d_image_and_are_cached(tiny, name):
    _, grey = tiny.embeddings.compute(SMALL)
    image = variant(name, SMALL)
    key, embeddings = tiny.embeddings.compute(image, rgb=True)
    assert np.asarray(embeddings["features"]).shape == np.asarray(grey["features"]).shape == (1, 32, 8, 8)
    assert tuple(embeddings["original_size"]) == (64, 64)
    assert key in tiny.embeddings.cache
    _, again = tiny.embeddings.compute(image.copy(), rgb=True)  # reopening reads the disk entry
    assert tiny.embeddings.cache.computed == 2 and tiny.embeddings.cache.reused == 1
    np.testing.assert_array_equal(np.asarray(again["features"]), np.asarray(embeddings["features"]))


def test_large_rgb_images_are_embedded_in_tiles_and_segmented(tiny):
    big = colour(make_sample("cells", seed=1, shape=(200, 180)).image)
    key, embeddings = tiny.embeddings.compute(big, rgb=True)
    assert key.tile_shape is not None
    mask = tiny.model.segment(embeddings, [ObjectPrompts(points=[[150, 120]], labels=[1])])[0]
    assert mask.shape == (200, 180)
    labels = tiny.model.automatic(big, embeddings, rgb=True, points_per_side=2)
    assert labels.shape == (200, 180) and labels.dtype == np.uint32


@pytest.mark.parametrize("kept_by", ["keep_stage_input", "capture"])
def test_an_adapter_reload_reembeds_an_rgb_image_from_its_kept_block_input(tiny, tiny_model, tmp_path, kept_by):
    from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset

    handle = attach(tiny_model.sam, spec_from_preset("late_lora", TINY.depth, blocks="last 1", rank=2))
    for parameter in handle.trainable_parameters():
        parameter.data.normal_(0, 0.5)
    adapter = Adapter.from_attached(handle, tiny_model)
    handle.detach()
    image = colour(SMALL)
    if kept_by == "capture":  # kept on the way while embedding with the base model
        tiny.embeddings.prepare_reloads(TINY.depth)
        tiny.embeddings.compute(image, rgb=True)
    else:  # what the Finetune widget does when a run starts
        tiny.embeddings.keep_stage_input(image, TINY.depth, rgb=True)
    tiny.model.set_adapter(adapter)
    _, fast = tiny.embeddings.compute(image, rgb=True)
    assert tiny.embeddings.reembedded_from_stage == 1
    tiny.model.set_adapter(None)  # the model is shared with the fresh session below

    fresh = AnnotatorSession(cache=EmbeddingCache(tmp_path / "fresh"))
    fresh.model.set_base(tiny_model)
    fresh.model.set_adapter(adapter)
    _, full = fresh.embeddings.compute(image, rgb=True)
    np.testing.assert_allclose(np.asarray(fast["features"]), np.asarray(full["features"]), atol=1e-5)


# ---------------------------------------------------------- segmentation
@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_box_prompt_segments_the_object(demo, name):
    image = variant(name, NUCLEI.image)
    _, embeddings = demo.embeddings.compute(image)
    ids = [i for i in np.unique(NUCLEI.labels) if i]
    objects = [ObjectPrompts(box=_box(NUCLEI.labels == i)) for i in ids]
    masks = demo.model.segment(embeddings, objects)
    assert all(mask.shape == (128, 128) for mask in masks)
    ious = [_iou(mask, NUCLEI.labels == i) for mask, i in zip(masks, ids, strict=True)]
    assert np.mean(ious) > VARIANTS[name][1], ious
    assert min(ious) > 0.25, ious  # every mask overlaps its object


@pytest.mark.parametrize("to_rgb", [stacked, lambda g: as_float(stacked(g))], ids=["uint8", "float32"])
def test_greyscale_and_three_identical_channels_give_the_same_masks(demo, to_rgb):
    """micro_sam repeats a greyscale channel 3 times: the stacked image is the same input to SAM."""
    _, grey = demo.embeddings.compute(NUCLEI.image)
    _, rgb = demo.embeddings.compute(to_rgb(NUCLEI.image), rgb=True)
    np.testing.assert_allclose(np.asarray(rgb["features"]), np.asarray(grey["features"]), atol=1e-5)
    objects = [
        ObjectPrompts(box=_box(NUCLEI.labels == 1)),
        ObjectPrompts(points=[[60, 60], [10, 10]], labels=[1, 0]),
    ]
    masks = zip(demo.model.segment(grey, objects), demo.model.segment(rgb, objects), strict=True)
    for grey_mask, rgb_mask in masks:
        assert _iou(grey_mask, rgb_mask) > 0.99


@pytest.mark.parametrize("name", ["stacked-uint8", "colour-uint8", "colour-float32"])
def test_automatic_segmentation_of_rgb_is_a_label_image(demo, name):
    image = variant(name, NUCLEI.image)
    _, embeddings = demo.embeddings.compute(image, rgb=True)
    labels = demo.model.automatic(image, embeddings, rgb=True, points_per_side=4)
    assert labels.shape == (128, 128) and labels.dtype == np.uint32
    if name == "stacked-uint8":  # the same objects as greyscale (the demo model finds some)
        _, grey = demo.embeddings.compute(NUCLEI.image)
        expected = demo.model.automatic(NUCLEI.image, grey, points_per_side=4)
        assert expected.max() > 0
        np.testing.assert_array_equal(labels, expected)


# --------------------------------------------------------------- training
@pytest.mark.parametrize("to_rgb", [colour, lambda g: as_float(colour(g))], ids=["uint8", "float32"])
def test_training_runs_on_rgb_samples(tiny_model, to_rgb):
    from napari_sam_peft.core.peft import spec_from_preset
    from napari_sam_peft.core.training.loop import TrainingConfig, train

    samples = [
        (to_rgb(s.image), s.labels) for s in (make_sample("nuclei", seed, shape=(64, 64)) for seed in (1, 2))
    ]
    config = TrainingConfig(steps=2, lr=1e-3, objects_per_image=2, sub_iterations=1, validate_every=1)
    adapter = train(tiny_model, spec_from_preset("late_lora", TINY.depth), samples[:1], samples[1:], config)
    assert np.isfinite(adapter.metrics["val_box_iou"])


@pytest.fixture
def rgb_store(tmp_path):
    from napari_sam_peft.core.data.store import AnnotationStore

    store = AnnotationStore.create(tmp_path / "rgb.sampeft.zarr")
    for seed, split in ((1, "train"), (2, "val")):
        sample = make_sample("nuclei", seed=seed, shape=(96, 96))
        store.add_labels(colour(sample.image), sample.labels, split=split)
    return store


def test_a_training_job_on_a_store_of_rgb_images_shares_the_annotators_cache(rgb_store, demo, tmp_path):
    from napari_sam_peft.core.peft import Adapter
    from napari_sam_peft.core.training.job import TrainingJob
    from napari_sam_peft.core.training.run import run_job

    images = {i.split: rgb_store.image(i.image_id) for i in rgb_store.snapshot().images}
    assert images["train"].shape == (96, 96, 3)
    demo.embeddings.compute(images["train"], rgb=True)  # what annotating this image left in the cache
    events: list = []
    job = TrainingJob(
        store=rgb_store.path,
        model="demo",
        preset="freeze_encoder",
        steps=2,
        validate_every=1,
        objects_per_image=1,
        sub_iterations=1,  # instead of 8 keeps a CPU step short; the images are what is tested
        device="cpu",
        cache_dir=demo.embeddings.cache.root,
    )
    record = run_job(job, events.append)
    assert record.status == "completed" and record.best_step is not None
    Adapter.load(record.adapter)
    prepared = next(e for e in events if e.event == "prepared")
    assert prepared.reused >= 1
    # the entries the job wrote for RGB images are served to the annotator as they are
    computed = demo.embeddings.cache.computed
    for image in images.values():
        demo.embeddings.compute(image, rgb=True)
    assert demo.embeddings.cache.computed == computed


# ------------------------------------------------------------- evaluation
def test_interactive_evaluation_of_stacked_rgb_gives_the_scores_of_greyscale(demo_model):
    from segment_anything import SamPredictor

    from napari_sam_peft.core.evaluation.interactive import evaluate_interactive

    sample = make_sample("nuclei", seed=3, shape=(96, 96))
    predictor = SamPredictor(demo_model.sam)
    scores = {
        name: evaluate_interactive(predictor, [(variant(name, sample.image), sample.labels)], n_iterations=1)
        for name in ("grey-uint8", "stacked-uint8")
    }
    for result in scores.values():
        assert result["n_objects"] == len(np.unique(sample.labels)) - 1
        assert all(0.0 <= result[k] <= 1.0 for k in ("point", "box", "i_p", "i_b"))
    assert scores["stacked-uint8"] == pytest.approx(scores["grey-uint8"], abs=0.02)


@pytest.mark.slow
def test_the_evaluate_command_runs_on_a_store_of_rgb_images(rgb_store, capsys):
    from napari_sam_peft.cli import main

    code = main(
        ["evaluate", str(rgb_store.path), "--model", "demo", "--device", "cpu", "--iterations", "1", "--json"]
    )
    assert code == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n_objects"] > 0
    assert all(0.0 <= scores[k] <= 1.0 for k in ("point", "box", "i_p", "i_b"))
