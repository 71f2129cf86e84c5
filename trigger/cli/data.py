"""`trigger data generate | inspect`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from trigger.cli import options
from trigger.errors import TriggerError


@click.group()
def data() -> None:
    """Make and look at jet datasets in the hls4ml LHC-jet layout."""


@data.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output HDF5 file; a manifest lands beside it as NAME.manifest.json.",
)
@click.option("--jets-per-class", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Worker processes, one Pythia each.",
)
@click.option("--seed", type=click.IntRange(1, 900_000_000), default=1, show_default=True)
@click.option("--pt-min", type=float, default=800.0, show_default=True, help="Jet pT window [GeV].")
@click.option("--pt-max", type=float, default=1200.0, show_default=True)
@click.option("--eta-max", type=float, default=2.0, show_default=True, help="Jet |eta| cut.")
@click.option(
    "--window",
    type=click.Choice(["jet", "parton"]),
    default="jet",
    show_default=True,
    help="What --pt-min/--pt-max bound: the jet's pT, or the hard-process parton/boson pT "
    "(the public hls4ml set: --window parton --pt-min 990 --pt-max 1010).",
)
@click.option(
    "--candidate-pt-min",
    type=float,
    default=1.0,
    show_default=True,
    help="Detector stage: drop candidates below this pT [GeV] (0 keeps all).",
)
@click.option(
    "--l1-rounding/--no-l1-rounding",
    default=True,
    show_default=True,
    help="Detector stage: round candidates to L1 words. Off only to measure what rounding "
    "costs (scripts/bench_inputs.py); the loader rounds what it reads either way.",
)
@click.option(
    "--variation",
    metavar="NAME",
    help="A named shift of the generator or detector, for distribution-shift studies: "
    "ue-off (no multiparton interactions), tune-a14 (Pythia's ATLAS A14 tune), threshold-up "
    "(--candidate-pt-min 2), window-up (--pt-min 900 --pt-max 1300, --window jet). It sets its "
    "options in place of their defaults; giving one of them another value is an error.",
)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Jets per shard: the unit of parallelism and of resumption.",
)
@options.cluster("--cluster-config")
@click.option(
    "--cluster-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML file whose `cluster:` section sets --cluster's resources (a sweep file works).",
)
@options.scheduler
def generate(
    out: Path,
    jets_per_class: int,
    workers: int,
    seed: int,
    pt_min: float,
    pt_max: float,
    eta_max: float,
    window: str,
    candidate_pt_min: float,
    l1_rounding: bool,
    variation: str | None,
    shard_size: int,
    cluster_kind: str | None,
    cluster_config: Path | None,
    scheduler: str | None,
) -> None:
    """Generate g, q, W, Z, t jets with Pythia 8, anti-kT R=0.8, truth-matched, as L1 candidates.

    Each jet's particles pass a detector stage: a pT threshold, then pT, eta and phi rounded
    to Level-1 words (0.25 GeV, pi/720), saturating at the word range.

    An interrupted run keeps its finished shards (OUT.shards/); rerunning the same command
    resumes. The same seed and shard size give a byte-identical file, whether the shards ran
    on local processes (--workers) or as Dask tasks (--cluster, --scheduler).

    \b
    Example:
      trigger data generate --out data/demo.h5 --jets-per-class 2000 --workers 2 --seed 1
      trigger data generate --out data/ue_off.h5 --jets-per-class 2000 --seed 1 --variation ue-off
      trigger data generate --out data/big.h5 --jets-per-class 200000 --cluster slurm \\
          --cluster-config site.yaml
    """  # fmt: skip
    from trigger.data.generate import GenerationSettings
    from trigger.data.generate import generate as run

    fields = {
        "jets_per_class": jets_per_class,
        "seed": seed,
        "pt_min": pt_min,
        "pt_max": pt_max,
        "eta_max": eta_max,
        "shard_size": shard_size,
        "window": window,
        "candidate_pt_min": candidate_pt_min,
        "l1_rounding": l1_rounding,
        "variation": variation,
    }
    settings = GenerationSettings(**fields | _variation_defaults(variation))
    existed = out.exists()
    if cluster_kind or scheduler:
        from trigger.cluster import dask_client

        section = _cluster_section(cluster_config)
        given = click.get_current_context().get_parameter_source("workers")
        jobs = workers if given is not ParameterSource.DEFAULT or cluster_kind == "local" else None
        config = options.cluster_settings(cluster_kind or "local", jobs, section)
        with dask_client(config, scheduler, log=click.echo) as client:
            run(settings, out, workers, client)
    else:
        run(settings, out, workers)
    verb = "up to date" if existed else "wrote"
    click.echo(f"{verb}: {out} ({5 * jets_per_class} jets)")


def _cluster_section(path: Path | None) -> dict | None:
    from trigger.config import read_mapping

    if path is None:
        return None
    section = read_mapping(path, "cluster file").get("cluster")
    if not isinstance(section, dict):
        msg = f"{path}: no `cluster:` section"
        raise TriggerError(msg)
    return section


def _variation_defaults(name: str | None) -> dict[str, Any]:
    """The variation's values of the options left at their defaults; one given on the command
    line stays, so that `GenerationSettings` refuses it if it contradicts the variation."""
    from trigger.data.generate import variation

    if name is None:
        return {}
    context = click.get_current_context()
    return {
        option: value
        for option, value in variation(name).settings.items()
        if context.get_parameter_source(option) is ParameterSource.DEFAULT
    }


@data.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--plot",
    "png",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write per-class mass, soft-drop mass and multiplicity histograms here (a PNG; an "
    "existing file is replaced only if it is an earlier plot of this command, with --force).",
)
@options.force
def inspect(file: Path, as_json: bool, png: Path | None, force: bool) -> None:
    """Per-class counts, median (soft-drop) mass and mean multiplicity of FILE."""  # fmt: skip
    from trigger.data.inspect import check_plot, plot, summarize

    if png is not None:
        check_plot(file, png, replace=force)
    summary = summarize(file)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _print_table(file, summary)
    if png is not None:
        click.echo(f"plot: {plot(file, png, replace=force)}", err=as_json)


def _print_table(file: Path, summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=str(file))
    for column in ("class", "jets", "median mass [GeV]", "median soft-drop mass [GeV]",
                   "soft-drop mass peak [GeV]",
                   "mean multiplicity"):  # fmt: skip
        table.add_column(column, justify="right")
    for name, row in summary.items():
        cells = [row["jets"], row["median_mass"], row["median_softdrop_mass"],
                 row["softdrop_mass_peak"],
                 row["mean_multiplicity"]]  # fmt: skip
        table.add_row(name, *("-" if v is None else str(v) for v in cells))
    Console(width=120).print(table)
