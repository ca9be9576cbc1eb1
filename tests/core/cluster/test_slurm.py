"""Workers as SLURM jobs: what the dask-jobqueue cluster is asked for, and the job script it makes of it
(dask-jobqueue's own script, without starting a scheduler)."""

from __future__ import annotations

import sys

import pytest

from napari_sam_peft.core.cluster.slurm import SlurmRequest, slurm_cluster


@pytest.fixture
def asked(monkeypatch):
    """The keyword arguments ``SLURMCluster`` is called with (nothing starts)."""
    import dask_jobqueue

    calls = []
    monkeypatch.setattr(dask_jobqueue, "SLURMCluster", lambda **kwargs: calls.append(kwargs) or "cluster")
    return calls


def _job_script(kwargs):
    from dask_jobqueue.slurm import SLURMJob

    job = {k: v for k, v in kwargs.items() if k != "scheduler_options"}
    return SLURMJob(scheduler="tcp://127.0.0.1:8786", name="worker-0", **job).job_script()


def test_each_gpu_job_asks_slurm_for_its_gpus_and_its_worker_declares_them(asked):
    request = SlurmRequest(gpus=2, walltime="01:30:00", cores=8, memory="64GB", queue="gpu", account="lab")
    assert slurm_cluster(request) == "cluster"
    (kwargs,) = asked
    assert kwargs["processes"] == 1 and kwargs["python"] == sys.executable and kwargs["scheduler_options"] == {}
    script = _job_script(kwargs)
    for line in ("#SBATCH --gres=gpu:2", "#SBATCH -t 01:30:00", "#SBATCH -p gpu", "#SBATCH -A lab",
                 "#SBATCH --cpus-per-task=8"):  # fmt: skip
        assert line in script.splitlines(), script
    assert f"{sys.executable} -m distributed.cli.dask_worker tcp://127.0.0.1:8786" in script
    assert "--nthreads 8" in script and "--resources GPU=2" in script  # what train --cluster-gpu asks for


def test_cpu_jobs_ask_for_no_gpu_and_a_dry_run_listens_on_this_machine_only(asked):
    slurm_cluster(SlurmRequest(gpus=0, host="127.0.0.1", python="/opt/env/bin/python"))
    (kwargs,) = asked
    assert kwargs["job_extra_directives"] == [] and kwargs["worker_extra_args"] == []
    assert kwargs["scheduler_options"] == {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
    script = _job_script(kwargs)
    assert "--gres" not in script and "--resources" not in script
    assert "/opt/env/bin/python -m distributed.cli.dask_worker" in script
