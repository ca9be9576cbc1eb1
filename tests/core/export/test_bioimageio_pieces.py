"""The pieces of a bioimage.io package, on small inputs: the one-line failure message, the lineage and
README, the cover image, and the test tensors (image, prompts from the ground truth, the model's answer)."""

from __future__ import annotations

import dataclasses
import importlib.metadata

import numpy as np
import pydantic
import pytest
import torch

from napari_sam_peft.core.data.sample_data import make_sample
from napari_sam_peft.core.data.store import AnnotationStore
from napari_sam_peft.core.errors import SamPeftError
from napari_sam_peft.core.evaluation.report import EvaluationReport
from napari_sam_peft.core.export import bioimageio_tensors as tensors
from napari_sam_peft.core.export.bioimageio import bioimageio_failure, export_bioimageio
from napari_sam_peft.core.export.bioimageio_docs import (
    OUTLINE,
    PackageContent,
    adapter_chain,
    cover_image,
    documentation,
    lineage,
)
from napari_sam_peft.core.peft import Adapter, MergeNotSupportedError, attach, spec_from_preset
from napari_sam_peft.core.training.runs import RunRecord

pytestmark = pytest.mark.export


def _adapter(model, preset="late_lora", **kwargs):
    handle = attach(model.sam, spec_from_preset(preset, model.architecture.depth, blocks="last 1"))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(0.01)
    adapter = Adapter.from_attached(handle, model, **kwargs)
    handle.detach()
    return adapter


def _content(**kwargs):
    return PackageContent("cells model", np.zeros((8, 8)), np.zeros((8, 8), dtype=np.int64), **kwargs)


def _record():
    evaluation = EvaluationReport(
        "validation split", "the validation split (1 image)", 1, 5,
        base={"point": 0.5, "box": 0.6, "n_objects": 5}, adapter={"point": 0.75, "box": 0.8125, "n_objects": 5},
    )  # fmt: skip
    return RunRecord(
        adapter="adapter.safetensors",
        job={"steps": 40, "lr": 1e-4, "model": "tiny"},
        best_score=0.81234,
        best_step=30,
        validation={"measured_on": "the validation split (1 image)", "train_images": 2, "train_objects": 17},
        status="completed",
        parent={"replay": "new images drawn twice as often"},
        evaluation=evaluation,
    )


# bioimageio_failure


def test_a_failure_inside_bioimageio_is_one_line_with_the_versions_and_what_to_do():
    message = bioimageio_failure(RuntimeError("the test runner\n    crashed"))
    assert message.startswith(
        "Writing the bioimage.io package failed (RuntimeError: the test runner crashed) with bioimageio.spec "
    )
    assert "\n" not in message
    for package in ("bioimageio.spec", "bioimageio.core", "pydantic"):
        assert f"{package} {importlib.metadata.version(package)}" in message
    assert "Nothing was written." in message
    assert "bash scripts/install.sh" in message and "pip install -r requirements-lock.txt" in message
    assert message.endswith("or export a checkpoint for micro_sam with --out MERGED.pth.")


def test_a_validation_error_is_said_by_its_first_error_and_a_long_reason_is_cut():
    with pytest.raises(pydantic.ValidationError) as invalid:
        pydantic.TypeAdapter(int).validate_python("not a number")
    message = bioimageio_failure(invalid.value)
    assert "(ValidationError: Input should be a valid integer, unable to parse string as an integer)" in message

    long = bioimageio_failure(ValueError("x" * 1000))
    assert "(ValueError: " + "x" * 240 + ")" in long and "x" * 241 not in long
    assert "(KeyError: KeyError)" in bioimageio_failure(KeyError())  # no words: the error's name


def test_a_missing_bioimageio_library_is_named_as_missing(monkeypatch):
    real = importlib.metadata.version

    def version(package):
        if package == "bioimageio.core":
            raise importlib.metadata.PackageNotFoundError(package)
        return real(package)

    monkeypatch.setattr(importlib.metadata, "version", version)
    message = bioimageio_failure(ImportError("No module named 'bioimageio.core'"))
    assert "no bioimageio.core" in message and f"pydantic {real('pydantic')}" in message


def test_an_output_that_is_no_zip_or_an_adapter_that_cannot_merge_is_refused_before_writing(tiny_model, tmp_path):
    with pytest.raises(SamPeftError, match="must be a .zip file, not 'model.pth'"):
        export_bioimageio(_adapter(tiny_model), tmp_path / "a.safetensors", tiny_model, tmp_path / "model.pth",
                          _content())  # fmt: skip
    with pytest.raises(MergeNotSupportedError):
        export_bioimageio(_adapter(tiny_model, "adaptformer"), tmp_path / "a.safetensors", tiny_model,
                          tmp_path / "model.zip", _content())  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# bioimageio_docs


def test_the_adapter_chain_follows_parents_as_far_as_the_run_records_reach(tiny_model, tmp_path):
    first = _adapter(tiny_model)
    second = _adapter(tiny_model, parent_adapter=first.identity)
    third = _adapter(tiny_model, parent_adapter=second.identity)
    runs = []
    for n, adapter in enumerate((first, second)):
        runs.append(RunRecord(adapter=str(adapter.save(tmp_path / f"run{n}" / "adapter.safetensors"))))
    runs.append(RunRecord(adapter=str(tmp_path / "deleted" / "adapter.safetensors")))  # ends nothing

    assert adapter_chain(third, runs) == [second.identity, first.identity]
    assert adapter_chain(third, []) == [second.identity]  # the adapter's own record of its parent
    assert adapter_chain(first, runs) == []


def test_the_lineage_names_adapter_parents_base_method_and_the_training_run(tiny_model):
    adapter = _adapter(tiny_model, training_snapshot="snap1", metrics={"box": 0.8})
    facts = lineage(adapter, tiny_model, _content(record=_record(), parents=["b" * 64]))
    assert facts["adapter"] == adapter.identity and facts["parents"] == ["b" * 64]
    assert facts["base_model"] == {"name": "tiny", "content_hash": tiny_model.identity.content_hash}
    assert facts["architecture"] == "tiny" and facts["method"] == "late_lora (lora, blocks 3)"
    assert facts["instance_decoder"] is False and facts["training_snapshot"] == "snap1"
    assert facts["metrics"] == {"box": 0.8}
    assert facts["training"] == {
        "steps": 40,
        "lr": 1e-4,
        "best_validation_box_iou": 0.81234,
        "best_step": 30,
        "validation": "the validation split (1 image)",
        "train_images": 2,
        "train_objects": 17,
        "status": "completed",
        "continued": "new images drawn twice as often",
        "evaluation": {
            "base": {"point": 0.5, "box": 0.6, "n_objects": 5},
            "adapter": {"point": 0.75, "box": 0.8125, "n_objects": 5},
        },
    }
    assert lineage(adapter, tiny_model, _content())["training"] == {}  # no run record beside the adapter


def test_the_readme_gives_lineage_training_evaluation_use_and_citations(tiny_model):
    adapter = _adapter(tiny_model)
    text = documentation(adapter, tiny_model, _content(record=_record(), parents=["b" * 64, "c" * 64]))
    lines = text.splitlines()
    assert lines[0] == "# cells model"
    assert lines[2].startswith("tiny (tiny architecture) finetuned with late_lora (lora, blocks 3) by napari-sam")
    assert "instance decoder" not in lines[2]
    assert f"- adapter: `{adapter.identity}`" in text
    assert "- parents, newest first: bbbbbbbbbbbb -> cccccccccccc" in lines
    assert f"- base model: `tiny` (`{tiny_model.identity.content_hash[:16]}`)" in lines
    assert "- store snapshot trained on: `not recorded`" in lines
    for line in ("- steps: 40", "- lr: 0.0001", "- best validation box iou: 0.812", "- best step: 30",
                 "- continued: new images drawn twice as often", "- status: completed"):  # fmt: skip
        assert line in lines, line
    assert "| point | 0.500 | 0.750 |" in lines and "| box | 0.600 | 0.812 |" in lines
    assert not any(line.startswith("| n_objects") for line in lines)  # counts are no scores
    assert "arXiv:2502.00418" in text and "doi:10.1038/s41592-024-02580-4" in text


def test_the_readme_of_a_first_adapter_with_a_decoder_says_so_and_has_no_training_section(tiny_model):
    adapter = _adapter(tiny_model, decoder={"head.weight": torch.ones(2)})
    text = documentation(adapter, tiny_model, _content())
    assert "- parents, newest first: none (trained from the base model)" in text
    assert "micro_sam's instance decoder (automatic instance segmentation) is included" in text
    assert "Called with the image alone, the model runs automatic instance segmentation." in text
    assert "## Training data and run" not in text and "| metric |" not in text
    plain = documentation(dataclasses.replace(adapter, decoder={}), tiny_model, _content())
    assert "instance decoder" not in plain and "image alone" not in plain


def test_the_cover_shows_the_stretched_image_beside_it_with_the_masks_outlined(tmp_path):
    import imageio.v3 as iio

    image = np.tile(np.linspace(10, 40, 48), (32, 1))  # a dim microscopy image, 32 x 48
    masks = np.zeros((1, 2, 1, 32, 48), dtype=np.uint8)
    masks[0, 0, 0, 4:12, 4:14] = 1
    masks[0, 1, 0, 16:28, 24:40] = 1
    inputs = {"image": np.stack([image] * 3)[None].astype(np.uint8)}
    path = cover_image(inputs, {"masks": masks}, tmp_path / "cover.png")

    cover = iio.imread(path)
    assert path == tmp_path / "cover.png" and cover.shape == (32, 96, 3)  # 2:1
    left, right = cover[:, :48], cover[:, 48:]
    assert left.min() == 0 and left.max() == 255  # stretched for the eye
    assert (right[4, 8] == OUTLINE).all() and (right[16, 30] == OUTLINE).all()  # the masks' edges
    assert (right[8, 8] == left[8, 8]).all() and (right[22, 32] == left[22, 32]).all()  # inside: the image
    assert (right[0:2] == left[0:2]).all() and (right[:, 44:] == left[:, 44:]).all()  # away from them too
    outlined = (right == OUTLINE).all(axis=-1)
    assert outlined[:, :16].any() and outlined[:, 22:].any() and not outlined[14, :].any()


# bioimageio_tensors


def test_a_test_image_becomes_rgb_uint8_and_anything_else_is_refused():
    grey = np.array([[0.0, 0.5], [1.0, 2.0]])
    rgb = tensors.as_rgb_uint8(grey)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[..., 0].tolist() == [[0, 64], [128, 255]] and (rgb[..., 1] == rgb[..., 0]).all()
    colour = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert (tensors.as_rgb_uint8(colour) == colour).all()  # uint8 RGB as it is
    assert (tensors.as_rgb_uint8(np.full((3, 3), 7.0)) == 0).all()  # flat: no division by zero
    with pytest.raises(SamPeftError, match=r"2D grey or RGB, not of shape \(4, 5, 6\)"):
        tensors.as_rgb_uint8(np.zeros((4, 5, 6)))


def test_the_largest_objects_get_prompts_and_labels_without_objects_are_refused():
    labels = np.zeros((10, 10), dtype=np.int64)
    labels[0, 0] = 7  # 1 pixel
    labels[2:4, 2:4] = 3  # 4 pixels
    labels[5:9, 5:9] = 5  # 16 pixels
    assert tensors.prompted_objects(labels) == [5, 3]
    assert tensors.prompted_objects(labels, count=5) == [5, 3, 7]
    with pytest.raises(SamPeftError, match="no annotated objects: choose an annotated image"):
        tensors.prompted_objects(np.zeros((4, 4), dtype=np.int64))


def test_the_test_inputs_prompt_the_largest_objects_by_box_point_and_mask():
    image = np.random.default_rng(0).random((64, 96))
    labels = np.zeros((64, 96), dtype=np.int64)
    labels[5:10, 5:10] = 1  # small
    labels[20:41, 50:71] = 2  # large: 21 x 21, centre (30, 60)
    inputs = tensors.test_inputs(image, labels, img_size=96, mask_size=24)

    assert inputs["image"].shape == (1, 3, 64, 96) and inputs["image"].dtype == np.uint8
    assert inputs["box_prompts"].tolist() == [[[50, 20, 70, 40], [5, 5, 9, 9]]]  # x0, y0, x1, y1; largest first
    assert inputs["point_prompts"].tolist() == [[[[60, 30]], [[7, 7]]]]  # (x, y), deepest inside
    assert inputs["point_labels"].tolist() == [[[1], [1]]]
    assert all(inputs[k].dtype == np.int64 for k in ("box_prompts", "point_prompts", "point_labels"))
    masks = inputs["mask_prompts"]
    assert masks.shape == (1, 2, 1, 24, 24) and masks.dtype == np.float32
    assert set(np.unique(masks)) == {-tensors.MASK_LOGIT, tensors.MASK_LOGIT}
    large = masks[0, 0, 0] > 0  # 96 x 96 (the image padded at the bottom) to 24 x 24: a quarter
    assert large[7, 15] and not large[2, 2] and not large[20:].any()  # the padding is outside
    assert masks[0, 1, 0, 1, 1] > 0 and (masks[0, 1, 0] > 0).sum() < large.sum()


def test_test_tensors_are_saved_as_npy_files_by_input_and_output_id(tmp_path):
    saved = tensors.TestTensors(
        {"image": np.ones((1, 3, 4, 4), np.uint8)}, {"masks": np.zeros((1, 1, 1, 4, 4), np.uint8)}
    ).save(tmp_path)
    assert saved == ({"image": tmp_path / "test_input_image.npy"}, {"masks": tmp_path / "test_output_masks.npy"})
    assert (np.load(saved[0]["image"]) == 1).all() and np.load(saved[1]["masks"]).shape == (1, 1, 1, 4, 4)


def test_the_adaptors_answers_to_the_test_inputs_are_arrays_by_output_id():
    class Adaptor(torch.nn.Module):
        def forward(self, image, box_prompts):
            assert not torch.is_grad_enabled() and box_prompts.dtype == torch.int64
            masks = torch.ones(1, box_prompts.shape[1], 1, *image.shape[-2:], dtype=torch.uint8)
            return masks, torch.full((1, box_prompts.shape[1], 1), 0.5), image.float().mean(1, keepdim=True)

    inputs = {"image": np.full((1, 3, 8, 8), 4, np.uint8), "box_prompts": np.zeros((1, 2, 4), np.int64)}
    answers = tensors.run_adaptor(Adaptor(), inputs)
    assert set(answers) == {"masks", "scores", "embeddings"}
    assert answers["masks"].shape == (1, 2, 1, 8, 8) and answers["scores"].tolist() == [[[0.5], [0.5]]]
    assert isinstance(answers["embeddings"], np.ndarray) and (answers["embeddings"] == 4).all()


def test_the_test_image_is_the_stores_first_annotated_validation_image(tmp_path):
    store = AnnotationStore.create(tmp_path / "s.sampeft.zarr")
    train, val = (make_sample("cells", seed=seed, shape=(48, 48)) for seed in (1, 2))
    store.add_image(np.zeros((48, 48), np.uint8), split="val")  # no objects: no test data
    store.add_labels(train.image, train.labels, split="train")
    store.add_labels(val.image, val.labels, split="val")
    image, labels = tensors.store_test_sample(store.path)
    np.testing.assert_array_equal(image, val.image)
    assert set(np.unique(labels)) - {0} and labels.shape == (48, 48)
    assert len(np.unique(labels)) == len(np.unique(val.labels))

    only_train = AnnotationStore.create(tmp_path / "t.sampeft.zarr")
    only_train.add_labels(train.image, train.labels, split="train")
    np.testing.assert_array_equal(tensors.store_test_sample(only_train.path)[0], train.image)


def test_of_a_volume_the_slice_with_the_most_objects_is_the_test_image(tmp_path):
    volume = (np.arange(3 * 40 * 40).reshape(3, 40, 40) % 251).astype(np.uint8)
    labels = np.zeros((3, 40, 40), dtype=np.int64)
    labels[0, 2:8, 2:8] = 1
    labels[1, 2:8, 2:8], labels[1, 20:30, 20:30], labels[1, 10:14, 30:36] = 1, 2, 3
    labels[2, 20:30, 20:30] = 2
    store = AnnotationStore.create(tmp_path / "v.sampeft.zarr")
    store.add_labels(volume, labels, split="train")
    image, plane = tensors.store_test_sample(store.path)
    np.testing.assert_array_equal(image, volume[1])
    assert plane.shape == (40, 40) and len(np.unique(plane)) == 4


def test_a_store_without_annotated_images_has_no_test_data(tmp_path):
    store = AnnotationStore.create(tmp_path / "empty.sampeft.zarr")
    store.add_image(np.zeros((40, 40), np.uint8))
    with pytest.raises(SamPeftError, match="has no annotated images to make the package's test data from"):
        tensors.store_test_sample(store.path)
