"""`trigger monitor`."""

from __future__ import annotations

from pathlib import Path

import click

from trigger.cli.options import chunk_jets, force, reference_data
from trigger.errors import CheckFailed


@click.command()
@click.argument("firmware_dir", metavar="FIRMWARE", type=click.Path(path_type=Path))
@click.option(
    "--reference",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The run the firmware was emitted from: its held-out jets are the reference.",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="New jets in the hls4ml LHC-jet layout, labels not needed (any size: read in chunks).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Report directory (monitor.json, report.md/.html, PNGs).",
)
@reference_data
@click.option(
    "--false-alarm",
    type=float,
    default=0.01,
    show_default=True,
    help="Probability that a file of the reference's conditions is flagged (all tests).",
)
@click.option(
    "--power",
    type=float,
    default=0.9,
    show_default=True,
    help="Probability of flagging, for the jets each test needs to see a shift.",
)
@click.option(
    "--effect",
    type=float,
    default=0.1,
    show_default=True,
    help="Shift size (Cohen's w) whose needed jets every test states.",
)
@click.option(
    "--bins",
    type=click.IntRange(min=2),
    default=20,
    show_default=True,
    help="Reference-quantile bins per quantity.",
)
@chunk_jets
@force
def monitor(
    firmware_dir: Path,
    run_dir: Path,
    data_path: Path,
    out_dir: Path,
    reference_data: Path | None,
    false_alarm: float,
    power: float,
    effect: float,
    bins: int,
    chunk_jets: int,
    force: bool,
) -> None:
    """Label-free drift check of a deployed firmware on new jets.

    Compares the firmware's input features (per candidate rank), its scores and top-class
    fractions, and the jet observables of the new file with the run's held-out jets. Exits 1
    when any test flags a drift, so the command can gate an automated workflow.

    \b
    Example:
      trigger monitor firmware/default --reference runs/default --data data/new.h5 \\
          --out monitor/new
    """  # fmt: skip
    from trigger.monitoring.stage import MonitorSettings
    from trigger.monitoring.stage import monitor as run

    settings = MonitorSettings(
        false_alarm=false_alarm, power=power, effect=effect, bins=bins, chunk_jets=chunk_jets
    )
    result = run(
        firmware_dir,
        run_dir,
        data_path,
        out_dir,
        settings=settings,
        reference_data=reference_data,
        replace=force,
        log=click.echo,
    )
    summary = result.summary
    click.echo(
        f"{summary['tests']} tests on {summary['jets']:,} jets, "
        f"{len(summary['flagged'])} flagged; report: {result.out_dir / 'report.html'}"
    )
    if summary["drift"]:
        moved = ", ".join(summary["flagged"][:5])
        more = f" and {len(summary['flagged']) - 5} more" if len(summary["flagged"]) > 5 else ""
        msg = f"drift flagged in {moved}{more} (details: {result.out_dir / 'report.md'})"
        raise CheckFailed(msg)
