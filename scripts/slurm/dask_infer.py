"""Batch inference over a dask-jobqueue SLURMCluster: one GPU job per Dask worker.

Run on the login node (it submits the worker jobs with sbatch and hosts the Dask scheduler),
in a small environment whose ``distributed`` matches the image's::

    apptainer exec wsi-seg.sif pip list --format=freeze | grep -E '^(dask|distributed)==' >pin.txt
    python3 -m venv ~/.venvs/wsi-dask
    ~/.venvs/wsi-dask/bin/pip install --constraint pin.txt dask-jobqueue distributed
    ~/.venvs/wsi-dask/bin/python scripts/slurm/dask_infer.py --sif wsi-seg.sif --bind /data \
        --slides /data/slides.csv -o /data/masks --model /data/runs/hrnet_w48 --jobs 8

Resources per worker job (edit with the options): 1 GPU, 8 CPU cores
(``--cpus-per-job``), 64GB (``--memory``), 4 h (``--walltime``), ``--partition`` and
``--account`` as your site requires. Each worker runs one slide at a time (one Dask thread);
the slide's own decode and OpenMP threads use the job's cores. The scheduler address is passed
to ``wsi-seg infer --slides ... --scheduler ADDRESS``, run inside the image (``--sif``) or
natively (no ``--sif``). Slide, model and output paths must be the same on the login node and
on the compute nodes (a shared file system, bound at the same path with ``--bind``).
``--dry-run`` prints the worker job script and the infer command without submitting anything.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TIFFSLIDE_NUM_DECODE_THREADS")


def container_prefix(
    sif: str | None, bind: str | None, *, gpu: bool, env: dict[str, str] | None = None
) -> list[str]:
    """``apptainer exec [--nv] [--bind B] [--env K=V,...] SIF`` (empty without an image)."""
    if not sif:
        return []
    options = (["--nv"] if gpu else []) + (["--bind", bind] if bind else [])
    if env:  # Apptainer keeps the image's variables over the host's: pass them explicitly
        options += ["--env", ",".join(f"{k}={v}" for k, v in env.items())]
    return ["apptainer", "exec", *options, sif]


def infer_command(args: argparse.Namespace, scheduler_address: str) -> list[str]:
    """The ``wsi-seg infer`` batch command that sends every slide to the cluster's workers."""
    command = [
        *container_prefix(args.sif, args.bind, gpu=False),
        "wsi-seg",
        "infer",
        "--slides",
        args.slides,
        "-o",
        args.output,
        "--model",
        args.model,
        "--device",
        "cuda",
        "--scheduler",
        scheduler_address,
        "--skip-errors",
    ]
    return command + (["--overwrite"] if args.overwrite else [])


def cluster_kwargs(args: argparse.Namespace) -> dict[str, object]:
    """Keyword arguments of ``SLURMCluster``: one single-threaded worker per GPU job."""
    threads = str(args.cpus_per_job)
    env = dict.fromkeys(THREAD_VARIABLES, threads)
    prefix = container_prefix(args.sif, args.bind, gpu=True, env=env)
    worker_python = " ".join(shlex.quote(w) for w in [*prefix, "python"])
    return {
        "cores": 1,  # Dask threads per worker: one slide at a time per GPU
        "processes": 1,
        "job_cpu": args.cpus_per_job,
        "memory": args.memory,
        "walltime": args.walltime,
        "queue": args.partition,
        "account": args.account,
        "job_name": "wsi-seg-dask",
        "job_extra_directives": ["--gpus=1"],
        "job_script_prologue": [" ".join(["export", *(f"{k}={v}" for k, v in env.items())])],
        "python": sys.executable if not args.sif else worker_python,
        "interface": args.interface,
        "local_directory": args.local_directory,
        "log_directory": args.log_directory,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of the driver."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slides", required=True, help="Manifest CSV of the slides.")
    p.add_argument("-o", "--output", required=True, help="Output folder of the masks.")
    p.add_argument("--model", required=True, help="Training run directory or checkpoint.")
    p.add_argument("--sif", default=None, help="Apptainer image; none = native wsi-seg.")
    p.add_argument("--bind", default=None, help="apptainer --bind folders, e.g. /data.")
    p.add_argument("--jobs", type=int, default=4, help="Worker jobs (one GPU each).")
    p.add_argument("--cpus-per-job", type=int, default=8)
    p.add_argument("--memory", default="64GB", help="Memory per job.")
    p.add_argument("--walltime", default="04:00:00")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--interface", default=None, help="Network interface, e.g. ib0.")
    p.add_argument("--local-directory", default="/tmp", help="Worker scratch folder.")
    p.add_argument("--log-directory", default="dask-logs", help="Worker job logs.")
    p.add_argument("--overwrite", action="store_true", help="Redo existing masks.")
    p.add_argument("--dry-run", action="store_true", help="Print, submit nothing.")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the cluster, run ``wsi-seg infer --scheduler``, close the cluster."""
    args = parse_args(argv)
    from dask_jobqueue import SLURMCluster

    with SLURMCluster(**cluster_kwargs(args)) as cluster:
        command = infer_command(args, cluster.scheduler_address)
        if args.dry_run:
            print(cluster.job_script())
            print(shlex.join(command))
            return 0
        cluster.scale(jobs=args.jobs)
        print(f"scheduler {cluster.scheduler_address}, dashboard {cluster.dashboard_link}")
        print(shlex.join(command), flush=True)
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
