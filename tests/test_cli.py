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
