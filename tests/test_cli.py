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
