"""The Finetune widget's "train on" panel: this machine, or a Dask cluster reached by address.

**Connect** asks the cluster's workers what they have, on a worker thread (never the Qt thread), and
says it here; the settings panel then recommends a preset for the worker a run would go to. The run
itself is the same worker process as a local run, started with ``--cluster`` (see
:mod:`napari_sam_peft.core.cluster.remote_run`), so its curves, hot reload and history are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, PushButton

from napari_sam_peft._qt.background import BackgroundJobs
from napari_sam_peft._qt.dock_layout import full_width, on_click, show_text, wrapping
from napari_sam_peft._qt.user_errors import notify_worker_error
from napari_sam_peft.core.cluster.connect import ClusterInfo
from napari_sam_peft.core.cluster.target import ClusterTarget
from napari_sam_peft.core.errors import ClusterError

THIS_MACHINE = "this machine"
DASK_CLUSTER = "Dask cluster"


class ClusterPanel(Container):
    """Where a run trains; for a cluster, its scheduler, TLS files and what Connect found."""

    def __init__(self, on_connected: Callable[[ClusterInfo | None], None]) -> None:
        super().__init__(labels=True)
        self._on_connected = on_connected
        self.info: ClusterInfo | None = None
        self.where = ComboBox(
            label="train on",
            choices=[THIS_MACHINE, DASK_CLUSTER],
            value=THIS_MACHINE,
            tooltip="Train in a process on this machine, or on a worker of a Dask cluster (a GPU server, SLURM)",
        )
        self.address = LineEdit(label="scheduler", value="")
        self.address.native.setPlaceholderText("tcp://host:8786, tls://..., or a scheduler file")
        self.address.tooltip = (
            "The Dask scheduler's address (dask scheduler prints it), or the file 'dask scheduler "
            "--scheduler-file' wrote; over the network use tls:// or an SSH tunnel to tcp://localhost:8786"
        )
        self.connect_button = PushButton(text="Connect")
        self.gpu = CheckBox(text="GPU worker", value=False)
        self.gpu.tooltip = "Train on a worker with a GPU (refused when none has one)"
        self.use_tls = CheckBox(text="TLS certificates", value=False, tooltip="For a tls:// scheduler")
        self.tls_ca_file = FileEdit(label="CA file", mode="r", filter="*.pem *.crt")
        self.tls_cert = FileEdit(label="certificate", mode="r", filter="*.pem *.crt")
        self.tls_key = FileEdit(label="key", mode="r", filter="*.pem *.key")
        self.status = wrapping(Label(value=""))
        self.buttons = Container(widgets=[self.connect_button, self.gpu], layout="horizontal", labels=False)
        self.extend([self.where, self.address, self.buttons, self.use_tls, *self.tls_files, self.status])
        self.jobs = BackgroundJobs(self._failed)
        on_click(self.connect_button, self.connect)
        self.address.native.returnPressed.connect(self.connect)
        self.where.changed.connect(self._show)
        self.use_tls.changed.connect(self._show)
        self.address.changed.connect(self._forget)
        self.gpu.changed.connect(lambda *_: self._on_connected(self.info))
        full_width(self.status)
        self._show()

    @property
    def tls_files(self) -> list[FileEdit]:
        """The three TLS file fields: CA, certificate, key."""
        return [self.tls_ca_file, self.tls_cert, self.tls_key]

    @property
    def remote(self) -> bool:
        """Whether runs go to a cluster."""
        return self.where.value == DASK_CLUSTER

    def target(self) -> ClusterTarget | None:
        """The cluster the fields name; None to train on this machine.

        Raises
        ------
        ClusterError
            "Dask cluster" without a scheduler.
        """
        if not self.remote:
            return None
        text = self.address.value.strip()
        if not text:
            raise ClusterError("Give the cluster's scheduler: its address (tcp://host:8786) or a scheduler file.")
        files = [_path(f.value) for f in self.tls_files] if self.use_tls.value else [None, None, None]
        if Path(text).expanduser().is_file():
            return ClusterTarget(None, Path(text).expanduser(), *files)
        return ClusterTarget(text, None, *files)

    def job_values(self) -> dict[str, Any]:
        """The cluster fields of a training job (empty to train on this machine)."""
        target = self.target()
        if target is None:
            return {}
        return {
            "cluster": target.address,
            "scheduler_file": target.scheduler_file,
            "cluster_gpu": bool(self.gpu.value),
            "tls_ca_file": target.tls_ca_file,
            "tls_cert": target.tls_cert,
            "tls_key": target.tls_key,
        }

    def connect(self) -> None:
        """Reach the scheduler and ask its workers what they have (on a worker thread)."""
        try:
            target = self.target()
        except ClusterError as err:
            self._failed(err)
            return
        if target is None:
            return
        self.connect_button.enabled = False
        self.status.value = f"Connecting to {target.describe()} ..."

        def work(_report: Any) -> ClusterInfo:
            from napari_sam_peft.core.cluster.connect import connect, describe_cluster

            client = connect(target)
            try:
                return describe_cluster(client)
            finally:
                client.close(timeout=5)

        self.jobs.run("Connecting to the Dask cluster", work, lambda info: self._connected(info, target))

    def _connected(self, info: ClusterInfo, target: ClusterTarget) -> None:
        self.connect_button.enabled = True
        self.info = info
        warning = target.warning()
        text = info.describe() + (f" Warning: {warning}" if warning else "")
        show_text(self.status, text, text)
        self._on_connected(info)

    def _failed(self, error: BaseException) -> None:
        self.connect_button.enabled = True
        self.info = None
        self.status.value = f"Not connected: {error}"
        notify_worker_error(error)
        self._on_connected(None)

    def _forget(self, *_: Any) -> None:
        """A new address: what the last Connect found no longer holds."""
        if self.info is not None:
            self.info = None
            self.status.value = "Connect to see the cluster's workers."
            self._on_connected(None)

    def _show(self, *_: Any) -> None:
        remote = self.remote
        for widget in (self.address, self.buttons, self.use_tls, self.status):
            widget.visible = remote
        for widget in self.tls_files:
            widget.visible = remote and bool(self.use_tls.value)
        self._on_connected(self.info if remote else None)


def _path(value: Any) -> Path | None:
    text = str(value or "").strip()
    return Path(text).expanduser() if text and text != "." else None
