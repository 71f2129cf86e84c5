"""`trigger emulate`."""

from __future__ import annotations

from pathlib import Path

import click

from trigger.cli.options import chunk_jets, engine, force


@click.command()
@click.argument("firmware_dir", metavar="FIRMWARE", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Jet file in the hls4ml LHC-jet layout, labels optional (any size: read in chunks).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Predictions file (HDF5): logits and top_class per jet, in the file's order.",
)
@engine
@chunk_jets
@force
def emulate(
    firmware_dir: Path, data_path: Path, out: Path, engine: str, chunk_jets: int, force: bool
) -> None:
    """The firmware's logits and decisions on every jet of a file.

    FIRMWARE is a directory written by `trigger emit-hls`; its input contract (the number of
    candidates) must be met by the file.

    \b
    Example:
      trigger emulate firmware/default --data data/jets1m.h5 --out predictions.h5
    """  # fmt: skip
    from trigger.emulate import emulate_file

    written = emulate_file(
        firmware_dir, data_path, out, engine_name=engine, chunk_jets=chunk_jets, replace=force
    )
    click.echo(f"predictions: {written}")
