import subprocess
import sys

from napari_sam_peft.cli import main


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

    from napari_sam_peft.core.sample_data import make_sample

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
        "snapshot",
    }
    assert np.isscalar(info["snapshot"]) and len(info["snapshot"]) == 32


def test_store_add_with_mismatched_labels_exits_2_and_changes_nothing(tmp_path):
    import tifffile

    from napari_sam_peft.core.sample_data import make_sample

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

    from napari_sam_peft.core.sample_data import make_sample
    from napari_sam_peft.core.store import AnnotationStore

    store = AnnotationStore.create(tmp_path / "eval.sampeft.zarr")
    sample = make_sample("nuclei", seed=700)
    store.add_labels(sample.image, sample.labels, split="val")
    result = _cli("evaluate", str(store.path), "--model", "demo", "--device", "cpu", "--iterations", "2", "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert set(scores) == {"point", "box", "i_p", "i_b", "n_objects"}
    assert scores["n_objects"] == sample.labels.max()
    assert all(0.0 <= scores[k] <= 1.0 for k in ("point", "box", "i_p", "i_b"))
    assert scores["box"] > 0.5  # the demo model is trained on this domain


def test_evaluate_without_validation_images_exits_2(tmp_path):
    from napari_sam_peft.core.store import AnnotationStore

    store = AnnotationStore.create(tmp_path / "empty.sampeft.zarr")
    result = _cli("evaluate", str(store.path), "--model", "demo", "--json")
    assert result.returncode == 2 and "no annotated val images" in result.stderr


def test_train_then_evaluate_with_the_adapter(tmp_path):
    import json

    from napari_sam_peft.core.peft import Adapter
    from napari_sam_peft.core.sample_data import make_sample
    from napari_sam_peft.core.store import AnnotationStore

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
    )
    assert result.returncode == 0, result.stderr
    adapter = Adapter.load(out)
    assert adapter.spec.preset == "decoder_lora"
    assert adapter.training_snapshot == store.info()["snapshot"]
    result = _cli(
        "evaluate", str(store.path), "--model", "demo", "--adapter", str(out), "--iterations", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_objects"] == val_sample.labels.max()


def test_train_with_a_bad_out_name_exits_2(tmp_path):
    from napari_sam_peft.core.store import AnnotationStore

    store = AnnotationStore.create(tmp_path / "s.sampeft.zarr")
    result = _cli(
        "train", str(store.path), "--model", "demo", "--preset", "lora", "--out", str(tmp_path / "a.pth")
    )
    assert result.returncode == 2 and ".safetensors" in result.stderr
