import re
import subprocess
import sys

import pytest

from napari_sam_peft.cli import main
from napari_sam_peft.core.training.runs import runs_dir

pytestmark = pytest.mark.slow  # each test runs the CLI in a new process


def test_help_lists_the_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert "demo" in capsys.readouterr().out


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "napari_sam_peft.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "napari-sam-peft 0.1.0" in result.stdout


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "napari_sam_peft.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_methods_json_has_every_preset_with_the_paper_counts():
    import json

    result = _cli("methods", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["preset"]: row for row in json.loads(result.stdout)}
    assert set(rows) >= {"full_ft", "freeze_encoder", "lora", "qlora", "late_lora", "late_ft", "decoder_lora"}
    assert set(next(iter(rows.values()))) == {"preset", "method", "blocks", "trainable_params"}
    assert rows["late_lora"] == {
        "preset": "late_lora",
        "method": "lora",
        "blocks": [6, 7, 8, 9, 10, 11],
        "trainable_params": 6_423_856,
    }
    assert rows["freeze_encoder"]["blocks"] == []


def test_methods_for_a_checkpoint_file_reads_its_architecture(tmp_path, tiny_sam):
    import torch

    path = tmp_path / "tiny.pth"
    torch.save(tiny_sam.state_dict(), path)
    result = _cli("methods", "--model", str(path))
    assert result.returncode == 0, result.stderr
    assert "4 encoder blocks" in result.stdout
    assert "late_lora" in result.stdout and "2-3" in result.stdout


def test_methods_with_a_bad_model_exits_2_with_one_line():
    result = _cli("methods", "--model", "missing.pth")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "No model file" in result.stderr


def test_store_add_and_info_json_for_tif_png_and_zarr(tmp_path):
    import json

    import imageio.v3 as iio
    import numpy as np
    import tifffile
    import zarr

    from napari_sam_peft.core.data.sample_data import make_sample

    store = tmp_path / "project.sampeft.zarr"
    a, b, c = (make_sample("cells", seed=s, shape=(64, 64)) for s in range(3))
    tifffile.imwrite(tmp_path / "a.tif", a.image)
    tifffile.imwrite(tmp_path / "a_labels.tif", a.labels)
    iio.imwrite(tmp_path / "b.png", b.image)
    iio.imwrite(tmp_path / "b_labels.png", b.labels)
    zarr.save_array(str(tmp_path / "c.zarr"), c.image)
    zarr.save_array(str(tmp_path / "c_labels.zarr"), c.labels)

    for name, split in (("a", "train"), ("b", "train"), ("c", "val")):
        suffix = {"a": ".tif", "b": ".png", "c": ".zarr"}[name]
        result = _cli(
            "store",
            "add",
            str(store),
            "--image",
            str(tmp_path / f"{name}{suffix}"),
            "--labels",
            str(tmp_path / f"{name}_labels{suffix}"),
            "--split",
            split,
        )
        assert result.returncode == 0, result.stderr

    result = _cli("store", "info", str(store), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    expected_objects = sum(int(s.labels.max()) for s in (a, b, c))
    assert {k: info[k] for k in ("images", "objects", "train_images", "val_images", "val_objects")} == {
        "images": 3,
        "objects": expected_objects,
        "train_images": 2,
        "val_images": 1,
        "val_objects": int(c.labels.max()),
    }
    assert set(info) == {
        "images",
        "objects",
        "train_images",
        "val_images",
        "train_objects",
        "val_objects",
        "volumes",
        "train_samples",
        "train_sample_objects",
        "snapshot",
    }
    assert np.isscalar(info["snapshot"]) and len(info["snapshot"]) == 32


def test_store_add_with_mismatched_labels_exits_2_and_changes_nothing(tmp_path):
    import tifffile

    from napari_sam_peft.core.data.sample_data import make_sample

    sample = make_sample("cells", seed=0, shape=(64, 64))
    tifffile.imwrite(tmp_path / "img.tif", sample.image)
    tifffile.imwrite(tmp_path / "lab.tif", sample.labels[:32])
    result = _cli(
        "store",
        "add",
        str(tmp_path / "s.sampeft.zarr"),
        "--image",
        str(tmp_path / "img.tif"),
        "--labels",
        str(tmp_path / "lab.tif"),
    )
    assert result.returncode == 2 and "must match" in result.stderr
    assert not (tmp_path / "s.sampeft.zarr").exists()


def test_store_info_on_a_non_store_exits_2(tmp_path):
    result = _cli("store", "info", str(tmp_path))
    assert result.returncode == 2 and "not a napari-sam-peft annotation store" in result.stderr


def test_evaluate_json_on_a_store_with_the_demo_model(tmp_path):
    import json

    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.data.store import AnnotationStore

    store = AnnotationStore.create(tmp_path / "eval.sampeft.zarr")
    sample = make_sample("nuclei", seed=700)
    store.add_labels(sample.image, sample.labels, split="val")
    result = _cli("evaluate", str(store.path), "--model", "demo", "--device", "cpu", "--iterations", "2", "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert {"point", "box", "i_p", "i_b", "n_objects"} <= set(scores)
    assert (scores["split"], scores["validation"], scores["n_images"]) == ("val", "validation split", 1)
    assert scores["n_objects"] == sample.labels.max()
    assert all(0.0 <= scores[k] <= 1.0 for k in ("point", "box", "i_p", "i_b"))
    assert scores["box"] > 0.5  # the demo model is trained on this domain
    assert 0.0 <= scores["ais"] <= 1.0 and scores["ais_method"] == "amg"  # no decoder: mask generation
    assert (
        "automatic segmentation: 1 image ..." in result.stderr
        and "automatic segmentation: image 1/1" in result.stderr
    )


def test_evaluate_says_each_part_and_leaves_out_the_automatic_segmentation_when_asked(tmp_path):
    import json

    from napari_sam_peft.core.data.sample_data import make_series
    from napari_sam_peft.core.data.store import AnnotationStore

    store = AnnotationStore.create(tmp_path / "eval.sampeft.zarr")
    for sample in make_series("nuclei", 2, shape=(128, 128)):
        store.add_labels(sample.image, sample.labels, split="val")
    args = ("evaluate", str(store.path), "--model", "demo", "--device", "cpu", "--iterations", "1", "--json")
    result = _cli(*args, "--no-automatic")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert "ais" not in scores and scores["ais_method"] == "not run (--no-automatic)" and scores["box"] > 0
    assert "interactive (point, box, corrections): image 2/2" in result.stderr
    assert "image 1/2, about" in result.stderr and "left" in result.stderr  # how long is left, after each image
    assert "automatic segmentation" not in result.stderr


def test_evaluate_without_validation_images_exits_2(tmp_path):
    from napari_sam_peft.core.data.store import AnnotationStore

    store = AnnotationStore.create(tmp_path / "empty.sampeft.zarr")
    result = _cli("evaluate", str(store.path), "--model", "demo", "--json")
    assert result.returncode == 2 and "no annotated validation images" in result.stderr


def _train_only_store(tmp_path, n_images: int):
    from napari_sam_peft.core.data.sample_data import make_series
    from napari_sam_peft.core.data.store import AnnotationStore

    store = AnnotationStore.create(tmp_path / "train_only.sampeft.zarr")
    for sample in make_series("cells", n_images, shape=(128, 128)):
        store.add_labels(sample.image, sample.labels, split="train")
    return store


def test_evaluate_never_falls_back_to_training_images_unless_asked(tmp_path):
    import json

    store = _train_only_store(tmp_path, 1)
    result = _cli("evaluate", str(store.path), "--model", "demo", "--device", "cpu", "--iterations", "1")
    assert result.returncode == 2 and result.stdout == ""
    assert "no annotated validation images" in result.stderr and "--split train" in result.stderr
    args = ("evaluate", str(store.path), "--model", "demo", "--device", "cpu", "--iterations", "1")
    args += ("--split", "train")
    result = _cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert (scores["split"], scores["validation"], scores["n_images"]) == ("train", "training data", 1)
    assert "not held out" in scores["measured_on"]
    result = _cli(*args)
    assert result.returncode == 0, result.stderr
    assert "mSA on training data" in result.stdout and "not held out" in result.stdout


def test_train_without_a_validation_split_says_what_it_held_out(tmp_path):
    store = _train_only_store(tmp_path, 2)
    out = tmp_path / "held.safetensors"
    args = ("--model", "demo", "--preset", "decoder_lora", "--steps", "2", "--validate-every", "1")
    args += ("--objects-per-image", "2", "--device", "cpu")
    result = _cli("train", str(store.path), *args, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "held out automatically:" in result.stderr and "objects of 2 training images" in result.stderr
    assert "val box IoU" in result.stderr and "validation: held out automatically)" in result.stderr
    # no --lr: the run takes the rate recommended for the demo model and says so
    assert "learning rate 0.001 (recommended for this model, method and recipe" in result.stderr
    # on a CPU the run takes the CPU recipe, names the other, and estimates its time from the probe's pass
    assert "the CPU recipe: 4 objects and 4 correction passes" in result.stderr
    assert "(given: 2 objects per step, validation every 1 step) (--recipe paper for the other)" in result.stderr
    assert re.search(r"estimate: [\d.]+ s per step, \d+ min for 2 steps", result.stderr), result.stderr
    # no --precision: the run says what auto took and why (no native bfloat16, or the probe's figures)
    no_bf16 = r"this CPU \(no AVX512-BF16 or AMX\) has no native bfloat16"
    why = rf"({no_bf16}|.*\(probe: fp32 \d+ ms, bf16 (\d+ ms|>3x)\))"
    assert re.search(rf"precision (fp32|bf16) \(auto: {why}", result.stderr), result.stderr


def test_train_with_a_precision_the_machine_only_emulates_is_one_line(tmp_path):
    store = _train_only_store(tmp_path, 1)
    args = ("--model", "demo", "--preset", "late_lora", "--device", "cpu", "--precision", "fp16")
    result = _cli("train", str(store.path), *args)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "fp16 is not native on this CPU" in result.stderr and "This machine supports: fp32" in result.stderr
    assert not runs_dir(store.path).exists()  # refused before a run folder is made


def test_the_evaluation_table_says_what_it_was_measured_on():
    from napari_sam_peft.core.evaluation.report import EvaluationReport

    scores = {"point": 0.5, "box": 0.6, "i_p": 0.7, "i_b": 0.8, "n_objects": 3}
    evaluation = EvaluationReport(
        validation="training data",
        measured_on="training data: the store has no validation split and only 1 training object",
        images=1,
        objects=3,
        base=scores,
        adapter=scores,
    )
    first, header, *_ = evaluation.text().splitlines()
    assert first == f"mSA on {evaluation.measured_on}" and "Box" in header


def test_train_then_evaluate_with_the_adapter(tmp_path):
    import json

    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.data.store import AnnotationStore
    from napari_sam_peft.core.peft import Adapter

    store = AnnotationStore.create(tmp_path / "s.sampeft.zarr")
    train_sample, val_sample = make_sample("cells", seed=1), make_sample("cells", seed=2)
    store.add_labels(train_sample.image, train_sample.labels, split="train")
    store.add_labels(val_sample.image, val_sample.labels, split="val")
    out = tmp_path / "cells.safetensors"
    result = _cli(
        "train",
        str(store.path),
        "--model",
        "demo",
        "--preset",
        "decoder_lora",
        "--steps",
        "2",
        "--lr",
        "1e-4",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--with-decoder",
    )
    assert result.returncode == 0, result.stderr
    adapter = Adapter.load(out)
    assert adapter.spec.preset == "decoder_lora" and adapter.has_decoder
    assert adapter.training_snapshot == store.info()["snapshot"]
    result = _cli(
        "evaluate", str(store.path), "--model", "demo", "--adapter", str(out), "--iterations", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["n_objects"] == val_sample.labels.max()
    assert 0.0 <= scores["ais"] <= 1.0 and scores["ais_method"] == "ais"  # the adapter's instance decoder


def test_train_from_an_adapter_continues_it_and_a_corrupt_parent_is_one_line(tmp_path):
    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.data.store import AnnotationStore
    from napari_sam_peft.core.peft import Adapter

    store = AnnotationStore.create(tmp_path / "s.sampeft.zarr")
    for seed, split in ((1, "train"), (2, "val")):
        sample = make_sample("cells", seed=seed)
        store.add_labels(sample.image, sample.labels, split=split)
    common = ["--model", "demo", "--preset", "late_lora", "--blocks", "last 1", "--steps", "2", "--device", "cpu"]
    first = tmp_path / "first.safetensors"
    assert _cli("train", str(store.path), *common, "--out", str(first)).returncode == 0
    sample = make_sample("cells", seed=3)  # a newly annotated image
    store.add_labels(sample.image, sample.labels, split="train")
    second = tmp_path / "second.safetensors"
    result = _cli("train", str(store.path), *common, "--out", str(second), "--from-adapter", str(first))
    assert result.returncode == 0, result.stderr
    assert f"continuing from {first}" in result.stderr and "1 of 2 training samples are new" in result.stderr
    assert Adapter.load(second).parent_adapter == Adapter.load(first).identity

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(first.read_bytes()[:-100])
    runs_before = sorted(runs_dir(store.path).glob("*"))
    result = _cli(
        "train", str(store.path), "--model", "demo", "--preset", "late_lora", "--from-adapter", str(corrupt)
    )
    assert result.returncode == 2
    assert (
        len(result.stderr.strip().splitlines()) == 1
        and "Cannot continue from corrupt.safetensors" in result.stderr
    )
    assert sorted(runs_dir(store.path).glob("*")) == runs_before


def test_train_with_a_bad_out_name_exits_2(tmp_path):
    from napari_sam_peft.core.data.store import AnnotationStore

    store = AnnotationStore.create(tmp_path / "s.sampeft.zarr")
    result = _cli(
        "train", str(store.path), "--model", "demo", "--preset", "lora", "--out", str(tmp_path / "a.pth")
    )
    assert result.returncode == 2 and ".safetensors" in result.stderr


@pytest.mark.export
def test_store_add_train_evaluate_export_then_micro_sam_loads_the_export(tmp_path):
    """The whole command-line chain on a vit_t-architecture model (MobileSAM's TinyViT, 1024 px, random weights,
    no download: micro_sam builds vit_t with mobile_sam; vit_b's merge is the same code, 10x the CPU time)."""
    import json

    import imageio.v3 as iio
    import torch
    from micro_sam.util import get_sam_model

    from napari_sam_peft.core.data.sample_data import make_sample
    from napari_sam_peft.core.peft import Adapter
    from napari_sam_peft.core.sam.architecture import build_sam
    from napari_sam_peft.core.sam.loading import save_model
    from napari_sam_peft.core.sam.tiny_vit import VIT_T

    torch.manual_seed(0)
    base = tmp_path / "vit_t_random.safetensors"
    save_model(build_sam(VIT_T), base, name="vit_t_random", architecture=VIT_T)
    store = tmp_path / "chain.sampeft.zarr"
    for seed, split in ((1, "train"), (2, "val")):
        sample = make_sample("cells", seed=seed, shape=(96, 96))
        iio.imwrite(tmp_path / f"image{seed}.tif", sample.image)
        iio.imwrite(tmp_path / f"labels{seed}.tif", sample.labels.astype("uint16"))
        args = ["store", "add", str(store), "--image", str(tmp_path / f"image{seed}.tif")]
        result = _cli(*args, "--labels", str(tmp_path / f"labels{seed}.tif"), "--split", split)
        assert result.returncode == 0, result.stderr

    adapter = tmp_path / "decoder.safetensors"
    result = _cli(
        "train", str(store), "--model", str(base), "--preset", "decoder_lora", "--steps", "2",
        "--validate-every", "1", "--objects-per-image", "2", "--lr", "1e-3", "--device", "cpu",
        "--out", str(adapter), "--with-decoder",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "step 2/2" in result.stderr

    result = _cli(
        "evaluate", str(store), "--model", str(base), "--adapter", str(adapter), "--iterations", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert {"point", "box", "i_p", "i_b", "n_objects"} <= set(scores)
    assert scores["validation"] == "validation split"

    merged = tmp_path / "merged.pth"
    result = _cli("export", str(adapter), "--model", str(base), "--out", str(merged))
    assert result.returncode == 0, result.stderr
    _, sam = get_sam_model(model_type="vit_t", checkpoint_path=str(merged), device="cpu", return_sam=True)
    from micro_sam.instance_segmentation import get_predictor_and_decoder

    _, decoder = get_predictor_and_decoder("vit_t", str(merged), device="cpu")  # micro_sam's AIS loads it
    trained = Adapter.load(adapter).decoder
    assert all(torch.equal(decoder.state_dict()[k], v) for k, v in trained.items())
    exported = torch.load(merged, weights_only=True)["model_state"]
    state = sam.state_dict()
    assert all(torch.equal(state[k], exported[k]) for k in exported)
    from napari_sam_peft.core.sam.loading import load_model

    base_state = load_model(base, device="cpu").sam.state_dict()
    changed = [k for k in exported if not torch.equal(exported[k], base_state[k])]
    assert changed and all(k.startswith("mask_decoder.") for k in changed)  # the merged decoder LoRA


@pytest.mark.export
def test_export_merges_an_adapter_that_reproduces_the_attached_model(tmp_path):
    import torch

    from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset
    from napari_sam_peft.core.sam.architecture import build_sam
    from napari_sam_peft.core.sam.loading import load_model
    from tests.conftest import sam_forward

    model = load_model("demo", device="cpu")
    handle = attach(model.sam, spec_from_preset("late_lora", model.architecture.depth, blocks="last 2"))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(0.02)
    adapter_path = Adapter.from_attached(handle, model).save(tmp_path / "a.safetensors")
    expected = sam_forward(model.sam, model.architecture.img_size)
    handle.detach()

    out = tmp_path / "merged.pth"
    result = _cli("export", str(adapter_path), "--model", "demo", "--out", str(out))
    assert result.returncode == 0, result.stderr
    plain = build_sam(model.architecture)
    plain.load_state_dict(torch.load(out, weights_only=True), strict=True)
    got = sam_forward(plain, model.architecture.img_size)
    torch.testing.assert_close(got["masks"], expected["masks"], atol=1e-4, rtol=1e-4)


@pytest.mark.export
def test_export_refuses_what_cannot_be_merged_or_read(tmp_path):
    import torch

    from napari_sam_peft.core.peft import Adapter, attach, spec_from_preset
    from napari_sam_peft.core.sam.loading import load_model

    model = load_model("demo", device="cpu")
    handle = attach(model.sam, spec_from_preset("adaptformer", model.architecture.depth))
    with torch.no_grad():
        for p in handle.trainable_parameters():
            p.add_(0.01)
    path = Adapter.from_attached(handle, model).save(tmp_path / "af.safetensors")
    handle.detach()
    result = _cli("export", str(path), "--model", "demo", "--out", str(tmp_path / "m.pth"))
    assert result.returncode == 2 and "AdaptFormer" in result.stderr
    result = _cli("export", str(path), "--model", "demo", "--out", str(tmp_path / "m.safetensors"))
    assert result.returncode == 2 and ".pth" in result.stderr
    assert not (tmp_path / "m.pth").exists()
