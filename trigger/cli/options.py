"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from trigger.cluster import ClusterConfig

recipe_overrides = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe value, e.g. --set training.epochs=5 (repeatable).",
)

force = click.option(
    "--force",
    is_flag=True,
    help="Replace an earlier output of this same command at --out (never anything else).",
)

engine = click.option(
    "--engine",
    type=click.Choice(["fast", "hls"]),
    default="fast",
    show_default=True,
    help="Firmware emulator: fast (the firmware's arithmetic vectorised with numpy) or hls (the "
    "project's own C++ through g++, the reference); both bit-exact with the firmware.",
)

chunk_jets = click.option(
    "--chunk-jets",
    type=click.IntRange(min=1),
    default=8192,  # trigger.emulate.CHUNK_JETS
    show_default=True,
    help="Jets read and emulated at a time (bounds the memory).",
)

reference_data = click.option(
    "--reference-data",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The run's data file when it moved (checked by content) [default: the recipe's path].",
)

scheduler = click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run on the running Dask cluster at ADDRESS (e.g. tcp://10.0.0.5:8786).",
)


def cluster(resources_from: str) -> Callable[[Callable], Callable]:
    """--cluster, whose batch resources come from `resources_from` (the command's own source
    of a `cluster:` section)."""
    return click.option(
        "--cluster",
        "cluster_kind",
        type=click.Choice(["local", "slurm", "htcondor", "pbs"]),
        help="Start a Dask cluster: local (a LocalCluster of --workers processes) or a batch "
        "system through dask-jobqueue, its queue, cores, memory and walltime from the "
        f"`cluster:` section of {resources_from}.",
    )


def cluster_settings(
    kind: str | None, workers: int | None, section: dict | None = None
) -> ClusterConfig:
    """The `cluster:` settings with the command line's kind and workers laid over them."""
    from trigger.cluster import ClusterConfig
    from trigger.config import validated

    config = validated(ClusterConfig, section or {}, "cluster")
    update = {"kind": kind} if kind else {}
    if workers is not None:
        update["workers"] = workers
    return config.model_copy(update=update)
