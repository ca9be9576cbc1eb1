"""The npe2 manifest is valid and napari finds the plugin's contributions."""

import subprocess
import sys

from npe2 import PluginManifest


def test_npe2_validate_accepts_the_manifest():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-sam-peft"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_manifest_offers_both_sample_domains_and_a_volume():
    manifest = PluginManifest.from_distribution("napari-sam-peft")
    keys = {sample.key for sample in manifest.contributions.sample_data}
    assert keys == {"nuclei", "cells", "volume"}
