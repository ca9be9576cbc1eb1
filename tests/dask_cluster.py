"""A real Dask cluster on 127.0.0.1 for tests: ``dask scheduler`` and ``dask worker`` as subprocesses.

Nothing listens beyond the loopback address. The worker keeps its blobs and runs in a folder of the
test's own (``NAPARI_SAM_PEFT_CLUSTER_DIR``) and trains with one thread, as the local runs the tests
compare it with do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: a hang guard for a scheduler or worker to come up (not a speed bound)
START_TIMEOUT = 180


@dataclass
class TlsFiles:
    """A self-signed certificate (from Dask's ``Security.temporary``) as PEM files."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, folder: Path) -> TlsFiles:
        from distributed.security import Security

        security = Security.temporary()
        folder.mkdir(parents=True, exist_ok=True)
        files = cls(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
        files.ca.write_text(security.tls_ca_file)
        files.cert.write_text(security.tls_client_cert)
        files.key.write_text(security.tls_client_key)
        return files

    def flags(self) -> list[str]:
        return ["--tls-ca-file", str(self.ca), "--tls-cert", str(self.cert), "--tls-key", str(self.key)]


@dataclass
class LocalDaskCluster:
    """One scheduler and one worker (no nanny, so killing the worker ends it) on 127.0.0.1."""

    folder: Path
    tls: TlsFiles | None = None
    threads: int = 1  # torch's threads in the worker (OMP_NUM_THREADS)
    scheduler: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    address: str = ""
    logs: list = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(OMP_NUM_THREADS=str(self.threads), PYTHONUNBUFFERED="1")
        env["NAPARI_SAM_PEFT_CLUSTER_DIR"] = str(self.folder / "worker")
        env["NAPARI_SAM_PEFT_CACHE"] = str(self.folder / "worker-cache")
        return env

    def _dask(self, *args: str, log: str) -> subprocess.Popen:
        out = open(self.folder / log, "w")  # noqa: SIM115 - closed in stop()
        self.logs.append(out)
        tls = self.tls.flags() if self.tls is not None else []
        command = [sys.executable, "-m", *args, *tls]
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env)

    def start(self) -> LocalDaskCluster:
        self.folder.mkdir(parents=True, exist_ok=True)
        scheduler_file = self.folder / "scheduler.json"
        protocol = ["--protocol", "tls"] if self.tls is not None else []
        self.scheduler = self._dask(
            "distributed.cli.dask_scheduler",
            "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
            "--scheduler-file", str(scheduler_file),
            *protocol,
            log="scheduler.log",
        )  # fmt: skip
        self.address = self._wait_for_file(scheduler_file)
        self.start_worker()
        return self

    def start_worker(self) -> None:
        self.worker = self._dask(
            "distributed.cli.dask_worker", self.address,
            "--nthreads", "1", "--no-nanny", "--dashboard-address", "127.0.0.1:0", "--host", "127.0.0.1",
            "--name", "worker-1",
            log="worker.log",
        )  # fmt: skip
        self.wait_for_workers(1)

    def _wait_for_file(self, path: Path) -> str:
        import time

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if path.exists():
                try:
                    return str(json.loads(path.read_text())["address"])
                except (ValueError, KeyError):
                    pass
            if self.scheduler is not None and self.scheduler.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"the scheduler did not start: {(self.folder / 'scheduler.log').read_text()}")

    def security(self):
        if self.tls is None:
            return None
        from distributed.security import Security

        return Security(
            tls_ca_file=str(self.tls.ca),
            tls_client_cert=str(self.tls.cert),
            tls_client_key=str(self.tls.key),
            require_encryption=True,
        )

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, security=self.security(), timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=START_TIMEOUT)

    def kill_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGKILL)
            self.worker.wait()

    def stop_scheduler(self) -> None:
        if self.scheduler is not None and self.scheduler.poll() is None:
            self.scheduler.send_signal(signal.SIGKILL)
            self.scheduler.wait()

    def stop(self) -> None:
        for process in (self.worker, self.scheduler):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()

    def log(self, name: str) -> str:
        return (self.folder / name).read_text()
