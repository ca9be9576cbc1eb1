"""``napari-sam-peft cluster info | slurm``: describe a Dask cluster, or start one of SLURM jobs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

NAME = "cluster"
HELP = "describe a Dask cluster's workers, or start workers as SLURM jobs (dask-jobqueue)"
DESCRIPTION = (
    "Training runs on a Dask cluster with 'train --cluster ADDRESS' and from the Finetune widget. "
    "'info' connects and says what each worker has (GPUs with free memory, threads, memory, versions); "
    "'slurm' starts a scheduler here and submits worker jobs to SLURM (dask-jobqueue), prints the address "
    "to train on, and keeps the cluster until Ctrl+C."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``napari-sam-peft cluster``."""
    commands = parser.add_subparsers(dest="cluster_command", required=True, metavar="SUBCOMMAND")
    info = commands.add_parser(
        "info", help="connect and list the workers", description="Connect to a scheduler and describe its workers."
    )
    info.add_argument("address", nargs="?", default=None, metavar="ADDRESS", help="tcp://host:8786 or tls://...")
    info.add_argument("--scheduler-file", type=Path, default=None, metavar="FILE")
    for flag in ("--tls-ca-file", "--tls-cert", "--tls-key"):
        info.add_argument(flag, type=Path, default=None, metavar="FILE", help="PEM file, for a tls:// address")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=run_info)

    slurm = commands.add_parser(
        "slurm",
        help="start a scheduler here and worker jobs on SLURM",
        description="Start a Dask scheduler in this process and submit worker jobs with dask-jobqueue's "
        "SLURMCluster; each job asks for --gpus GPUs and its worker declares the resource GPU=N. Prints the "
        "address for 'train --cluster' and the Finetune widget, writes it to --scheduler-file, and keeps "
        "the cluster until Ctrl+C. --dry-run prints the job script and submits nothing.",
    )
    slurm.add_argument("--gpus", type=int, default=1, help="GPUs per job (default 1; 0 for CPU workers)")
    slurm.add_argument("--walltime", default="02:00:00", help="time limit per job (default 02:00:00)")
    slurm.add_argument("--cores", type=int, default=4, help="cores per job (default 4)")
    slurm.add_argument("--memory", default="32GB", help="memory per job (default 32GB)")
    slurm.add_argument("--queue", default=None, help="SLURM partition (default: the cluster's)")
    slurm.add_argument("--account", default=None, help="SLURM account (default: yours)")
    slurm.add_argument("--jobs", type=int, default=1, help="worker jobs to submit (default 1)")
    slurm.add_argument("--interface", default=None, help="network interface to listen on, e.g. ib0")
    slurm.add_argument("--scheduler-file", type=Path, default=None, metavar="FILE", help="write the address here")
    slurm.add_argument("--dry-run", action="store_true", help="print the job script; submit nothing")
    slurm.set_defaults(run=run_slurm)

    attach = commands.add_parser(
        "attach",
        help="follow again a run that goes on on a cluster",
        description="Follow again a run that trains on a Dask cluster after its napari or terminal side "
        "ended or lost the connection: its past events are replayed from the scheduler, then followed to "
        "its end; each best adapter arrives in RUN_DIR as before. Exit status as napari-sam-peft train's.",
    )
    attach.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run's folder here (with run.json)")
    attach.add_argument("--cluster", default=None, metavar="ADDRESS", help="default: the address it ran on")
    for flag in ("--tls-ca-file", "--tls-cert", "--tls-key"):
        attach.add_argument(flag, type=Path, default=None, metavar="FILE", help="PEM file, for a tls:// address")
    attach.add_argument("--events", action="store_true", help="print progress as JSON lines on stdout")
    attach.add_argument("--stop-file", type=Path, default=None, help="stop the run once this file exists")
    attach.set_defaults(run=run_attach)


def run_info(args: argparse.Namespace) -> int:
    from napari_sam_peft.core.cluster.connect import connect, describe_cluster
    from napari_sam_peft.core.cluster.target import ClusterTarget

    target = ClusterTarget(args.address, args.scheduler_file, args.tls_ca_file, args.tls_cert, args.tls_key)
    warning = target.warning()
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    client = connect(target)
    try:
        info = describe_cluster(client)
    finally:
        client.close(timeout=5)
    if args.json:
        print(json.dumps({"address": info.address, "workers": [asdict(w) for w in info.workers]}, indent=2))
    else:
        print(info.describe())
    return 0


def run_attach(args: argparse.Namespace) -> int:
    from napari_sam_peft.cli.train import follow_run
    from napari_sam_peft.core.cluster.remote_run import attach_to_run
    from napari_sam_peft.core.cluster.target import ClusterTarget

    target = None
    if args.cluster is not None:
        target = ClusterTarget(args.cluster, None, args.tls_ca_file, args.tls_cert, args.tls_key)
    adapter = args.run_dir / "adapter.safetensors"
    return follow_run(lambda emit, stop: attach_to_run(args.run_dir, target, emit, stop), args, "", adapter)


def run_slurm(args: argparse.Namespace) -> int:
    from napari_sam_peft.core.cluster.slurm import SlurmRequest, slurm_cluster
    from napari_sam_peft.core.errors import ClusterError

    if args.gpus < 0 or args.jobs < 1:
        raise ClusterError("--gpus must be 0 or more and --jobs at least 1.")
    request = SlurmRequest(
        gpus=args.gpus,
        walltime=args.walltime,
        cores=args.cores,
        memory=args.memory,
        queue=args.queue,
        account=args.account,
        jobs=args.jobs,
        interface=args.interface,
        host="127.0.0.1" if args.dry_run else None,  # a dry run listens on nothing but this machine
    )
    cluster = slurm_cluster(request)
    try:
        if args.dry_run:
            print(cluster.job_script())
            return 0
        address = cluster.scheduler_address
        if args.scheduler_file is not None:
            args.scheduler_file.write_text(json.dumps({"address": address, "type": "Scheduler"}))
        cluster.scale(jobs=args.jobs)
        gpu = " --cluster-gpu" if args.gpus else ""
        print(f"Dask scheduler at {address}; {args.jobs} worker job(s) submitted to SLURM (squeue -u $USER).")
        print(f"Train on it: napari-sam-peft train STORE --model NAME --preset NAME --cluster {address}{gpu}")
        print("or in the Finetune widget: train on 'Dask cluster', this address, Connect. Ctrl+C ends the jobs.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("closing the cluster and cancelling its jobs", file=sys.stderr)
        return 0
    finally:
        cluster.close()
