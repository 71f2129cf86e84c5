"""`trigger adapt`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from trigger.cli.options import force, reference_data


@click.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Labelled jets of the new conditions (hls4ml LHC-jet layout), split like the run's.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The adapted run directory (emit-hls and validate take it like any run).",
)
@reference_data
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--learning-rate", type=float, default=1e-3, show_default=True)
@click.option(
    "--rehearsal",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Nominal jets of the run's own splits mixed in per new jet (0: none).",
)
@click.option(
    "--anchor",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Strength of an L2 pull of every weight towards its deployed value (0: none).",
)
@click.option("--seed", type=int, default=7, show_default=True)
@force
def adapt(
    run_dir: Path,
    data_path: Path,
    out_dir: Path,
    reference_data: Path | None,
    epochs: int,
    learning_rate: float,
    rehearsal: float,
    anchor: float,
    seed: int,
    force: bool,
) -> None:
    """Fine-tune a run to new conditions without changing its firmware's footprint.

    The architecture, quantizers, input stage and zero pattern stay as deployed, so the
    adapted firmware differs only in its constants; nominal jets are rehearsed so that the
    original conditions are not forgotten.

    \b
    Example:
      trigger adapt runs/default --data data/ue_off.h5 --out runs/default_ue_off
      trigger emit-hls runs/default_ue_off --out firmware/default_ue_off
    """  # fmt: skip
    from trigger.training.adapt import AdaptSettings
    from trigger.training.adapt import adapt as run

    settings = AdaptSettings(
        epochs=epochs, learning_rate=learning_rate, rehearsal=rehearsal, anchor=anchor, seed=seed
    )
    out = run(
        run_dir, data_path, out_dir, settings, reference_data=reference_data, replace=force,
        log=click.echo,
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    for name in ("deployed", "float", "student"):
        m = metrics[name]
        click.echo(
            f"{name}: accuracy {m['accuracy']:.4f} on the new test split, "
            f"{m['nominal_test']['accuracy']:.4f} on the nominal one"
        )
    click.echo(f"adapted run: {out}")
