"""The headless loop on volumes: a simulated user boxes each nucleus and propagates it, then finetuning."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam_peft.cli.demo_volume import VolumeDemoSettings, run_volume_demo
from napari_sam_peft.core.data.sample_volume import make_volume
from napari_sam_peft.core.data.store import AnnotationStore

pytestmark = [pytest.mark.slow, pytest.mark.volume]  # the demo trains


def test_the_volume_demo_commits_every_object_in_3d_trains_and_scores_the_held_out_volume(tmp_path):
    shape = (10, 128, 128)
    settings = VolumeDemoSettings(
        model="demo", steps=4, validate_every=2, objects_per_image=2, sub_iterations=1, train_seeds=(1,),
        shape=shape, held_out_shape=(8, 128, 128), points_per_side=4, correction_iterations=1,
    )  # fmt: skip
    messages: list[str] = []
    result = run_volume_demo(tmp_path, settings, messages.append)

    n_objects = len(np.unique(make_volume(1, shape).labels)) - 1
    counts = result.corrections
    assert counts.accepted_propagated + counts.corrected_with_box + counts.painted == n_objects
    assert counts.accepted_propagated > 0  # the demo model carries nuclei, its own domain, through z
    (image,) = AnnotationStore(tmp_path / "demo_volume.sampeft.zarr").snapshot().images
    assert image.volume and len(image.objects) == n_objects
    assert all(isinstance(obj.prompts["slice"], int) and obj.prompts["box"] for obj in image.objects)

    assert [row.metric for row in result.report.rows()][-2:] == ["3D", "3D AIS"]
    assert all(0 <= result.report.adapter[key] <= 1 for key in ("volume", "volume_ais"))
    assert result.adapter.exists() and "| 3D AIS |" in result.table()
    assert any("by a box on each nucleus' middle slice and Shift+S" in m for m in messages)
