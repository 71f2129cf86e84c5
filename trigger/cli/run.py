"""`trigger run`."""

from __future__ import annotations

from pathlib import Path

import click

from trigger.cli.options import recipe_overrides
from trigger.cli.validate import report_gates


@click.command()
@click.argument("recipe_path", type=click.Path(dir_okay=False, path_type=Path))
@recipe_overrides
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Processes for data generation when the dataset is absent.",
)
def run(recipe_path: Path, overrides: tuple[str, ...], workers: int) -> None:
    """Data, train-and-compress, emit-hls and validate for one recipe.

    Stages whose artifacts are up to date for the same recipe and data are skipped. Outputs:
    runs/NAME, firmware/NAME, validation/NAME (NAME = the recipe's name, by default its file
    name). Exits 1 when a validation gate fails.

    \b
    Example:
      trigger run models/default.yaml
    """  # fmt: skip
    from trigger.config import load_recipe
    from trigger.pipeline import run_pipeline

    result = run_pipeline(load_recipe(recipe_path, overrides), workers, log=click.echo)
    report_gates(result.metrics, result.out_dir)
