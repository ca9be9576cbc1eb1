"""The Finetune widget on a real Dask cluster (scheduler and worker on 127.0.0.1), by clicks and keys.

The address is typed, Connect says what the worker has, Start trains there and each best adapter is hot
reloaded into the Segment widget; a worker killed mid-run is one notification, and the adapter that
arrived last stays live.
"""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt

from napari_sam_peft._qt.finetune_cluster import DASK_CLUSTER
from tests._qt.conftest import click, error_messages
from tests._qt.test_finetune_widget import _wait_for_end, loop  # noqa: F401 - the fixture
from tests.dask_cluster import LocalDaskCluster

pytestmark = [pytest.mark.slow, pytest.mark.cluster]  # Dask processes, training


@pytest.fixture
def cluster(tmp_path):
    local = LocalDaskCluster(tmp_path / "dask").start()
    yield local
    local.stop()


def _toggle(qtbot, checkbox) -> None:
    """Tick or untick a check box with the space key, as a keyboard user does."""
    checkbox.native.setFocus()
    qtbot.keyClick(checkbox.native, Qt.Key.Key_Space)


def _connect(finetune, qtbot, address: str):
    panel = finetune.settings.cluster
    assert panel.address.native.isHidden()  # this machine first: no cluster fields
    panel.where.value = DASK_CLUSTER
    assert not panel.address.native.isHidden() and not panel.connect_button.native.isHidden()
    panel.address.native.setFocus()
    qtbot.keyClicks(panel.address.native, address)
    click(panel.connect_button)
    qtbot.waitUntil(lambda: "Connected to" in panel.status.value or "Not connected" in panel.status.value,
                    timeout=60_000)  # fmt: skip
    return panel


def test_a_run_on_the_cluster_by_clicks_reloads_into_the_segment_widget(loop, qtbot, cluster):  # noqa: F811
    viewer, segment, finetune = loop
    panel = _connect(finetune, qtbot, cluster.address)
    said = panel.status.native.toolTip()  # the whole line (the label breaks the address at its slashes)
    assert f"Connected to {cluster.address}: 1 worker:" in said and "no GPU, 1 threads" in said, said
    assert "Recommended on the cluster's worker" in finetune.recommendation.value  # for the remote device
    _toggle(qtbot, panel.gpu)  # asking for a GPU on this CPU-only cluster says so
    assert panel.gpu.value and "has a GPU" in finetune.recommendation.value
    _toggle(qtbot, panel.gpu)
    assert "Recommended on the cluster's worker" in finetune.recommendation.value

    click(finetune.start_button)
    assert finetune.process is not None and "--cluster" in finetune.process.command
    qtbot.waitUntil(lambda: "Dask worker" in finetune.status.value or finetune.reloads >= 1, timeout=300_000)
    qtbot.waitUntil(lambda: finetune.reloads >= 1, timeout=300_000)
    assert segment.session.model.adapter is not None  # the cluster's adapter is live in Segment
    _wait_for_end(qtbot, finetune, segment, timeout=300_000)
    assert finetune.process.terminal_event.event == "finished", finetune.process.terminal_event
    history = finetune.history.native
    assert history.item(0, 2).text().startswith("completed on "), history.item(0, 2).text()
    assert not [m for m in error_messages() if "Traceback" in m]


def test_a_worker_killed_mid_run_is_a_notification_and_the_last_adapter_stays_live(
    loop,  # noqa: F811
    qtbot,
    cluster,
):
    viewer, segment, finetune = loop
    _connect(finetune, qtbot, cluster.address)
    finetune.steps.value = "400"
    finetune.validate_every.value = 1
    click(finetune.start_button)
    qtbot.waitUntil(lambda: finetune.reloads >= 1, timeout=300_000)
    live = segment.session.model.adapter
    cluster.kill_worker()
    qtbot.waitUntil(lambda: finetune.process.terminal_event is not None, timeout=120_000)
    event = finetune.process.terminal_event
    assert event.event == "error" and event.kind == "cluster", event
    assert any("left the cluster mid-run" in m for m in error_messages()), error_messages()
    assert segment.session.model.adapter is not None and live is not None  # napari keeps the last one
    assert finetune.start_button.enabled  # and can start again
