"""Which scheduler a run goes to: addresses, scheduler files, TLS files, and the plain-tcp warning."""

from __future__ import annotations

import dataclasses
import json

import pytest

from napari_sam_peft.core.cluster.target import ClusterTarget
from napari_sam_peft.core.errors import ClusterError
from napari_sam_peft.core.training.job import TrainingJob


@pytest.mark.parametrize(
    ("address", "resolved"),
    [("tcp://gpu01:8786", "tcp://gpu01:8786"), ("gpu01:8786", "tcp://gpu01:8786"), (" tls://a:1 ", "tls://a:1")],
)
def test_an_address_without_a_scheme_is_tcp(address, resolved):
    assert ClusterTarget(address).resolved_address() == resolved


def test_a_scheduler_file_gives_the_address_and_a_bad_one_says_what_to_give(tmp_path):
    path = tmp_path / "scheduler.json"
    path.write_text(json.dumps({"address": "tcp://10.0.0.5:8786", "type": "Scheduler"}))
    assert ClusterTarget(scheduler_file=path).resolved_address() == "tcp://10.0.0.5:8786"
    path.write_text("not json")
    with pytest.raises(ClusterError, match="dask scheduler --scheduler-file"):
        ClusterTarget(scheduler_file=path).resolved_address()
    with pytest.raises(ClusterError, match="scheduler address"):
        ClusterTarget().resolved_address()


@pytest.mark.parametrize(
    ("address", "warns"),
    [
        ("tcp://gpu01.example.org:8786", True),
        ("10.1.2.3:8786", True),
        ("tcp://127.0.0.1:8786", False),
        ("tcp://localhost:8786", False),
        ("tls://gpu01.example.org:8786", False),
    ],
)
def test_plain_tcp_to_another_host_warns_to_use_tls_or_a_tunnel(address, warns):
    warning = ClusterTarget(address).warning()
    assert (warning is not None) == warns
    if warns:
        assert "tls://" in warning and "ssh -L 8786:localhost:8786" in warning


def test_tls_needs_the_three_files_and_says_which_are_missing(tmp_path):
    with pytest.raises(ClusterError, match="needs the CA file, certificate, key"):
        ClusterTarget("tls://gpu01:8786").security()
    ca = tmp_path / "ca.pem"
    with pytest.raises(ClusterError, match="TLS file not found"):
        ClusterTarget("tls://gpu01:8786", tls_ca_file=ca, tls_cert=ca, tls_key=ca).security()
    assert ClusterTarget("tcp://127.0.0.1:1").security() is None  # plain tcp: no Security


def test_a_job_names_its_cluster_and_its_command_line_carries_it(tmp_path):
    job = TrainingJob(store=tmp_path / "s.sampeft.zarr", model="demo", preset="late_lora", out=tmp_path / "a.st")
    assert ClusterTarget.from_job(job) is None  # this machine
    job = dataclasses.replace(job, cluster="tls://gpu01:8786", cluster_gpu=True, tls_ca_file=tmp_path / "ca.pem")
    assert ClusterTarget.from_job(job) == ClusterTarget("tls://gpu01:8786", tls_ca_file=tmp_path / "ca.pem")
    argv = job.to_argv()
    assert argv[argv.index("--cluster") + 1] == "tls://gpu01:8786" and "--cluster-gpu" in argv
    assert argv[argv.index("--tls-ca-file") + 1] == str(tmp_path / "ca.pem")
