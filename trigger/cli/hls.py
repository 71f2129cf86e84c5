"""`trigger emit-hls`: a trained run, or a QKeras model of one's own -> hls4ml firmware project."""

from __future__ import annotations

from pathlib import Path

import click

from trigger.cli.options import force
from trigger.errors import TriggerError


@click.command("emit-hls")
@click.argument("run_dir", metavar="[RUN]", required=False, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A QKeras model file (.h5) of your own, instead of RUN; needs --inputs, --data, --out.",
)
@click.option(
    "--inputs",
    "contract_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The input stage of --model, in the input_stage.json form every run writes: "
    "n_constituents, features, center, shift, input_bits, input_integer.",
)
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
    help="Jet file for the emulation check [default: the run recipe's data.path].",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="firmware.KEY=VALUE",
    help="Override a firmware setting, e.g. --set firmware.clock_period=4 (repeatable).",
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
    "Yosys -> rtl/hardware.json (needs: apt-get install yosys verilator).",
)
@force
def emit_hls_cmd(
    run_dir: Path | None,
    model_path: Path | None,
    contract_path: Path | None,
    out_dir: Path | None,
    data_path: Path | None,
    overrides: tuple[str, ...],
    synth: bool,
    rtl: bool,
    force: bool,
) -> None:
    """Write the HLS project of RUN's student (or of --model), compile its C++ emulator and
    its testbench, prove both exact.

    \b
    Reads RUN/{student.h5, float.h5, recipe.yaml, input_stage.json}, checked against the run's
    seal. Writes to --out, which appears complete or not at all: the project (build scripts,
    firmware C++, weights), emulator/, conversion.json (every fixed-point type),
    emulation.json (emulator vs the student on test jets, the reference used, and the
    testbench's verdict), tb_data/ with the testbench that compares every output bit for bit,
    estimate.json (da4ml's cost model: LUT, FF, latency) and float_reference/.
    Exit 1 when the emulator or the testbench differs from the student: the directory is kept
    for inspection, and validate and emulate refuse it.
    --set firmware.KEY=VALUE changes the firmware settings (part, clock_period, ...).

    \b
    Examples:
      trigger emit-hls runs/default --out firmware/default
      trigger emit-hls runs/default --out firmware/default --rtl --force
      trigger emit-hls runs/default --out firmware/k7 --set firmware.part=xc7k325tffg900-2
      trigger emit-hls --model mine.h5 --inputs mine_inputs.json --data data/demo.h5 --out fw/mine
    """
    if (run_dir is None) == (model_path is None):
        msg = "give either RUN or --model (with --inputs, --data and --out), not both or neither"
        raise TriggerError(msg)
    options = {"overrides": overrides, "synth": synth, "rtl": rtl, "replace": force}

    from trigger.hls.stage import emit_hls, emit_model  # TensorFlow, hls4ml: only when run

    if model_path is not None:
        missing = [name for name, v in (("--inputs", contract_path), ("--data", data_path),
                                        ("--out", out_dir)) if v is None]  # fmt: skip
        if missing:
            msg = f"--model needs {', '.join(missing)} too"
            raise TriggerError(msg)
        emit_model(model_path, contract_path, out_dir, data_path=data_path, log=click.echo,
                   **options)  # fmt: skip
        return
    out_dir = out_dir or Path("firmware") / run_dir.name
    emit_hls(run_dir, out_dir, data_path=data_path, log=click.echo, **options)
