"""Workers as SLURM jobs, through dask-jobqueue's ``SLURMCluster``: a scheduler here, workers on GPU nodes.

``napari-sam-peft cluster slurm --gpus 1 --walltime 02:00:00`` starts the scheduler in its own process
(on a login node), submits the worker jobs and prints the address to train on; ``--dry-run`` prints
the job script instead of submitting it. Each worker declares the resource ``GPU=n``, which
``train --cluster-gpu`` asks for.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SlurmRequest:
    """What each worker job asks SLURM for, and how the scheduler is reached.

    Attributes
    ----------
    gpus
        GPUs per job (``--gres=gpu:N``; the worker declares ``GPU=N``); 0 for CPU workers.
    walltime
        The jobs' time limit, ``HH:MM:SS``.
    cores, memory
        Cores and memory per job (dask-jobqueue's ``cores`` and ``memory``, e.g. ``"32GB"``).
    queue, account
        SLURM partition and account (None: the cluster's defaults).
    jobs
        How many worker jobs to submit.
    interface
        The network interface scheduler and workers listen on (e.g. ``ib0``); None: dask-jobqueue's choice.
    host
        The address the scheduler listens on (None: the interface's); ``127.0.0.1`` for a dry run.
    python
        The Python on the nodes that has napari-sam-peft installed (default: this one).
    """

    gpus: int = 1
    walltime: str = "02:00:00"
    cores: int = 4
    memory: str = "32GB"
    queue: str | None = None
    account: str | None = None
    jobs: int = 1
    interface: str | None = None
    host: str | None = None
    python: str = sys.executable


def slurm_cluster(request: SlurmRequest) -> Any:
    """A dask-jobqueue ``SLURMCluster`` for ``request`` (its scheduler runs in this process; no job is
    submitted until it is scaled)."""
    from dask_jobqueue import SLURMCluster

    scheduler_options: dict[str, Any] = {}
    if request.host is not None:  # the dashboard too listens there only
        scheduler_options.update(host=request.host, dashboard_address=f"{request.host}:0")
    return SLURMCluster(
        cores=request.cores,
        processes=1,  # one worker process per job: a run trains in one task
        memory=request.memory,
        walltime=request.walltime,
        queue=request.queue,
        account=request.account,
        interface=request.interface,
        python=request.python,
        job_extra_directives=[f"--gres=gpu:{request.gpus}"] if request.gpus else [],
        worker_extra_args=["--resources", f"GPU={request.gpus}"] if request.gpus else [],
        scheduler_options=scheduler_options,
    )
