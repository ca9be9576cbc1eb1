"""Reach a Dask scheduler and ask its workers what they have (from the workers themselves).

:func:`connect` opens a ``distributed.Client`` within a time limit, with one message for each way it
can fail; :func:`describe_cluster` runs :func:`~.worker_tasks.probe_worker` on every worker (their
GPUs with total and free memory, threads, memory, versions); :meth:`ClusterInfo.choose` picks the
worker a run goes to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ClusterError
from .target import ClusterTarget

#: seconds to wait for a scheduler before saying it cannot be reached
CONNECT_TIMEOUT = 10.0
_GIB = 1024**3


@dataclass(frozen=True)
class GpuInfo:
    """One GPU of a worker: its name, total and free memory in bytes."""

    name: str
    memory: int
    free: int


@dataclass(frozen=True)
class WorkerInfo:
    """What one worker reported about itself."""

    address: str
    host: str
    threads: int
    memory: int
    gpus: tuple[GpuInfo, ...] = ()
    resources: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_probe(cls, address: str, values: dict[str, Any]) -> WorkerInfo:
        """The info of :func:`~.worker_tasks.probe_worker`'s answer."""
        return cls(
            address=address,
            host=str(values.get("host", "")),
            threads=int(values.get("threads", 0)),
            memory=int(values.get("memory", 0)),
            gpus=tuple(GpuInfo(str(g["name"]), int(g["memory"]), int(g["free"])) for g in values.get("gpus", [])),
            resources={str(k): float(v) for k, v in dict(values.get("resources") or {}).items()},
            versions={str(k): str(v) for k, v in dict(values.get("versions") or {}).items()},
        )

    @property
    def device(self) -> str:
        """``cuda`` when it has a GPU, else ``cpu``."""
        return "cuda" if self.gpus else "cpu"

    @property
    def free_gpu_memory(self) -> int:
        """The free memory of its emptiest GPU in bytes (0 without a GPU)."""
        return max((gpu.free for gpu in self.gpus), default=0)

    def describe(self) -> str:
        """``"gpu01: NVIDIA A100 (80 GiB, 79 GiB free), 16 threads, 251 GiB memory"``."""
        gpus = ", ".join(f"{g.name} ({g.memory / _GIB:.0f} GiB, {g.free / _GIB:.0f} GiB free)" for g in self.gpus)
        return (
            f"{self.host or self.address}: {gpus or 'no GPU'}, {self.threads} threads, "
            f"{self.memory / _GIB:.0f} GiB memory"
        )


@dataclass(frozen=True)
class ClusterInfo:
    """The scheduler's address and its workers, as they reported themselves."""

    address: str
    workers: tuple[WorkerInfo, ...]

    def describe(self) -> str:
        """One line: how many workers, and each one's GPUs, threads and memory."""
        if not self.workers:
            return f"Connected to {self.address}: no workers yet (start them with 'dask worker {self.address}')."
        n = len(self.workers)
        listed = "; ".join(worker.describe() for worker in self.workers[:4])
        more = f"; and {n - 4} more" if n > 4 else ""
        return f"Connected to {self.address}: {n} worker{'s' if n != 1 else ''}: {listed}{more}."

    def choose(self, gpu: bool) -> WorkerInfo:
        """The worker a run goes to: with ``gpu``, the one whose GPU has the most free memory; else the
        one with a GPU if any (the emptiest), then the most threads.

        Raises
        ------
        ClusterError
            No worker at all, or none with a GPU when ``gpu`` asks for one.
        """
        if not self.workers:
            raise ClusterError(
                f"The cluster at {self.address} has no workers: start one ('dask worker {self.address}') and "
                "connect again."
            )
        with_gpu = [worker for worker in self.workers if worker.gpus]
        if gpu and not with_gpu:
            raise ClusterError(
                f"No worker of the cluster at {self.address} has a GPU ({len(self.workers)} CPU-only "
                "worker(s)): start workers on GPU nodes (napari-sam-peft cluster slurm --gpus 1), or train "
                "without asking for a GPU."
            )
        candidates = with_gpu or list(self.workers)
        return max(candidates, key=lambda worker: (worker.free_gpu_memory, worker.threads))

    @property
    def device(self) -> str:
        """The device a run would train on: ``cuda`` when a worker has a GPU, else ``cpu``."""
        return "cuda" if any(worker.gpus for worker in self.workers) else "cpu"

    @property
    def free_gpu_memory(self) -> int | None:
        """The most free GPU memory of any worker in bytes; None without a GPU."""
        free = [worker.free_gpu_memory for worker in self.workers if worker.gpus]
        return max(free) if free else None


def connect(target: ClusterTarget, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A ``distributed.Client`` connected to ``target``'s scheduler.

    Raises
    ------
    ClusterError
        Nothing answers within ``timeout`` seconds, the address is malformed, or TLS is refused.
    """
    from distributed import Client

    address = target.resolved_address()
    security = target.security()
    try:
        return Client(address, security=security, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as err:
        tunnel = "" if target.uses_tls else " (or that the SSH tunnel to it is open)"
        raise ClusterError(
            f"Could not reach a Dask scheduler at {address} within {timeout:.0f} s: check the address and that "
            f"'dask scheduler' runs there{tunnel}. ({_first_line(err)})"
        ) from None
    except ValueError as err:  # a malformed address or a protocol dask does not know
        raise ClusterError(f"{address} is not a Dask scheduler address ({_first_line(err)}).") from None


def describe_cluster(client: Any) -> ClusterInfo:
    """Ask every worker what it has (it runs :func:`~.worker_tasks.probe_worker`).

    Raises
    ------
    ClusterError
        When the workers cannot run napari-sam-peft's code (it is not installed there).
    """
    from .worker_tasks import probe_worker

    address = str(client.scheduler.address)
    try:
        answers = client.run(probe_worker)
    except (ImportError, AttributeError) as err:
        raise ClusterError(
            f"The workers of {address} cannot run napari-sam-peft ({_first_line(err)}): install the same "
            "napari-sam-peft version there (pip install napari-sam-peft) and start them again."
        ) from None
    except (OSError, TimeoutError) as err:
        raise ClusterError(f"The workers of {address} did not answer ({_first_line(err)}).") from None
    workers = tuple(WorkerInfo.from_probe(worker, values) for worker, values in sorted(answers.items()))
    return ClusterInfo(address, workers)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
