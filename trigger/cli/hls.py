"""`trigger emit-hls`: trained run -> hls4ml firmware project + bit-accurate C++ emulator."""

from __future__ import annotations

from pathlib import Path

import click

from trigger.cli.options import force


@click.command("emit-hls")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Firmware directory [default: firmware/<run name>].",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Jet file for the emulation check [default: the recipe's data.path].",
)
@click.option(
    "--synth",
    is_flag=True,
    help="Also run C synthesis (needs vivado_hls or vitis-run on PATH) -> synthesis.json.",
)
@click.option(
    "--rtl",
    is_flag=True,
    help="Also write the student's Verilog (da4ml), prove it in Verilator, count resources with "
    "Yosys -> rtl/hardware.json; da4ml's cost model of the float reference -> "
    "float_reference/rtl/hardware.json (needs: apt-get install yosys verilator).",
)
@force
def emit_hls_cmd(
    run_dir: Path,
    out_dir: Path | None,
    data_path: Path | None,
    synth: bool,
    rtl: bool,
    force: bool,
) -> None:
    """Write the HLS project of RUN's student, compile its C++ emulator, prove it exact.

    \b
    Reads RUN/{student.h5, float.h5, recipe.yaml, preprocess.json}, checked against the run's
    seal. Writes the project (build scripts, firmware C++, weights), emulator/,
    conversion.json (every fixed-point type), emulation.json (emulator vs QKeras on test
    jets) and float_reference/ to --out, which appears complete or not at all.

    \b
    Examples:
      trigger emit-hls runs/default --out firmware/default
      trigger emit-hls runs/default --data data/demo.h5 --synth
      trigger emit-hls runs/default --out firmware/default --rtl --force
    """
    out_dir = out_dir or Path("firmware") / run_dir.name

    from trigger.hls import emit_hls  # TensorFlow and hls4ml: imported only when run

    emit_hls(
        run_dir, out_dir, data_path=data_path, synth=synth, rtl=rtl, replace=force, log=click.echo
    )
