"""Where fan-out work runs: one small adapter over Dask.

A `LocalCluster` on this machine by default (one single-threaded worker process per core), a
running Dask scheduler by address, or a batch-system cluster through dask-jobqueue (SLURM,
HTCondor, PBS) whose jobs each start one single-threaded worker per core. Every worker sizes
TensorFlow's and BLAS's thread pools to that one thread, so N workers use N cores and no more.

A remote worker reads and writes the paths the driver gives it: on a batch cluster, the data
file and the output directory must lie on a file system every node mounts.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field

from trigger.config import Strict
from trigger.errors import TriggerError
from trigger.io import Log

# One thread per worker process, for TensorFlow (read when it starts) and for BLAS/OpenMP.
WORKER_ENVIRONMENT = {
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}

BATCH_KINDS = ("slurm", "htcondor", "pbs")
SCHEDULER_TIMEOUT_S = 10


class ClusterConfig(Strict):
    """Where the work runs: `local`, or a batch system through dask-jobqueue."""

    kind: Literal["local", "slurm", "htcondor", "pbs"] = "local"
    """`local` (a Dask LocalCluster on this machine) or a batch system."""
    workers: Annotated[int, Field(ge=1)] | None = None
    """`local`: worker processes (default: one per core). Batch: jobs to start."""
    queue: str | None = None
    """Batch: queue or partition (SLURM `-p`, PBS `-q`; HTCondor ignores it)."""
    account: str | None = None
    """Batch: account or project charged for the jobs."""
    cores: Annotated[int, Field(ge=1)] | None = None
    """Batch, required: cores per job (one single-threaded worker each)."""
    memory: str | None = None
    """Batch, required: memory per job, e.g. `16GB`."""
    walltime: str | None = None
    """Batch: wall-time limit per job, e.g. `04:00:00`."""
    job_extra: tuple[str, ...] = ()
    """Batch: extra directives written into each job script, e.g. `--constraint=avx2`."""


def _jobqueue_class(kind: str) -> Any:
    import dask_jobqueue

    return {
        "slurm": dask_jobqueue.SLURMCluster,
        "htcondor": dask_jobqueue.HTCondorCluster,
        "pbs": dask_jobqueue.PBSCluster,
    }[kind]


def _jobqueue_options(config: ClusterConfig) -> dict[str, Any]:
    missing = [name for name in ("cores", "memory") if getattr(config, name) is None]
    if missing:
        msg = f"cluster.{missing[0]} must be set for a {config.kind} cluster (per job)"
        raise TriggerError(msg)
    exports = [f"export {key}={value}" for key, value in WORKER_ENVIRONMENT.items()]
    options: dict[str, Any] = {
        "cores": config.cores,
        "processes": config.cores,  # one single-threaded worker per core
        "memory": config.memory,
        "job_script_prologue": exports,
        "job_extra_directives": list(config.job_extra),
        "walltime": config.walltime,
        "queue": config.queue,
        "account": config.account,
    }
    if config.kind == "htcondor":
        # HTCondor has no queues or accounts; it wants a disk request and KEY=VALUE submit
        # lines, and bounds a job's run time by the +MaxRuntime attribute, in seconds.
        options |= {"queue": None, "account": None, "walltime": None, "disk": config.memory}
        extra = dict(line.split("=", 1) for line in config.job_extra)
        if config.walltime:
            extra["+MaxRuntime"] = str(_seconds(config.walltime))
        options["job_extra_directives"] = extra
    return {key: value for key, value in options.items() if value is not None}


def _seconds(walltime: str) -> int:
    """`[[HH:]MM:]SS` in seconds."""
    try:
        parts = [int(part) for part in walltime.split(":")]
    except ValueError:
        parts = []
    if not 1 <= len(parts) <= 3:
        msg = f"cluster.walltime must be HH:MM:SS, got '{walltime}'"
        raise TriggerError(msg)
    return sum(value * 60**power for power, value in enumerate(reversed(parts)))


def batch_cluster(config: ClusterConfig) -> Any:
    """The dask-jobqueue cluster of `config` (no job is submitted until it is scaled)."""
    if config.kind not in BATCH_KINDS:
        msg = f"cluster.kind '{config.kind}' is not a batch system ({', '.join(BATCH_KINDS)})"
        raise TriggerError(msg)
    if config.kind == "htcondor":
        bad = [line for line in config.job_extra if "=" not in line]
        if bad:
            msg = f"cluster.job_extra for htcondor takes KEY=VALUE lines, got '{bad[0]}'"
            raise TriggerError(msg)
    return _jobqueue_class(config.kind)(**_jobqueue_options(config))


def job_script(config: ClusterConfig) -> str:
    """The job script dask-jobqueue would submit for `config`, without submitting it."""
    cluster = batch_cluster(config)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def _local_cluster(workers: int | None) -> Any:
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers or os.cpu_count() or 1,
        threads_per_worker=1,
        processes=True,
        env=WORKER_ENVIRONMENT,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )


def _connect(scheduler: str) -> Any:
    from distributed import Client

    try:
        return Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        msg = f"cannot reach the Dask scheduler at {scheduler}: {reason}"
        raise TriggerError(msg) from None


@contextlib.contextmanager
def dask_client(
    config: ClusterConfig, scheduler: str | None = None, log: Log = print
) -> Iterator[Any]:
    """A Dask client: of `scheduler` when given, else of a cluster started from `config`
    (stopped, with its workers or jobs, when the block ends)."""
    from distributed import Client

    if scheduler:
        with _connect(scheduler) as client:
            log(f"dask: joined {scheduler}; dashboard {client.dashboard_link}")
            yield client
        return
    if config.kind == "local":
        cluster = _local_cluster(config.workers)
    else:
        cluster = batch_cluster(config)
        cluster.scale(jobs=config.workers or 1)
    with cluster, Client(cluster) as client:
        where = f"{config.kind} cluster" if config.kind != "local" else "LocalCluster"
        log(f"dask: {where}; dashboard {client.dashboard_link}")
        yield client


def worker_slots(client: Any) -> int:
    """Threads across the cluster's workers now (at least 1: batch jobs may still be queued)."""
    return max(1, sum(client.nthreads().values()))
