"""Accuracy, latency and resources of trained students from the open RTL flow (no Vivado).

    .venv/bin/python scripts/bench_rtl.py [RUN ...] [--jets 2000] [--out firmware/bench_rtl]
                                          [--yosys flat|per_stage]

RUN defaults to runs/default; pass e.g. a literature Deep Sets run (phi [32, 32, 32], rho [32])
as a second argument. For each run: accuracy from RUN/metrics.json (the student's), latency
(Verilator, one jet per clock, bit-exact against QKeras on `--jets` test jets), LUT/FF/DSP from
Yosys synth_xilinx and da4ml's own LUT estimate. Writes OUT/NAME/rtl/ and OUT/bench_rtl.json.
`--estimate-only` prints da4ml's cost model alone, in seconds per run, to screen designs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]


def bench(run_dir: Path, out_dir: Path, jets: int, yosys: str | None) -> dict:
    from trigger.config import load_recipe
    from trigger.hls.stage import emulation_sample
    from trigger.inputs import InputStage
    from trigger.rtl import emit_rtl
    from trigger.taggers import load_model

    recipe = load_recipe(run_dir / "recipe.yaml")
    firmware = recipe.firmware.model_copy(update={"yosys": yosys or recipe.firmware.yosys})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stage = InputStage.load(run_dir / "input_stage.json")
    sample = emulation_sample(recipe.data, stage, None, jets)
    start = time.perf_counter()
    figures = emit_rtl(
        load_model(run_dir / "student.h5"),
        stage,
        out_dir / run_dir.name / "rtl",
        firmware,
        sample.words,
        log=lambda msg: print(f"  {run_dir.name}: {msg}", flush=True),
    )
    tools = figures["tools"]
    return {
        "run": str(run_dir),
        "accuracy": metrics["student"]["accuracy"],
        "latency_cycles": figures["latency_cycles"],
        "latency_ns": figures["latency_ns"],
        "ii": figures["ii"],
        "lut": figures["lut"],
        "ff": figures["ff"],
        "dsp": figures["dsp"],
        "carry": figures["carry"],
        "da4ml_lut_estimate": tools["da4ml"]["lut_estimate"],
        "yosys": tools["yosys"]["mode"],
        "bit_exact_fraction": figures["bit_exact"]["bit_exact_fraction"],
        "jets": figures["bit_exact"]["jets"],
        "clock_period_ns": figures["clock_period_ns"],
        "seconds": round(time.perf_counter() - start, 1),
        "source": figures["source"],
    }


def estimate(run_dir: Path) -> dict:
    """da4ml's cost model only: seconds per run instead of Yosys' minutes, for screening."""
    from trigger.config import load_recipe
    from trigger.inputs import InputStage
    from trigger.rtl import cost_model, trace_student
    from trigger.taggers import load_model

    recipe = load_recipe(run_dir / "recipe.yaml")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    clock = recipe.firmware.clock_period
    stage = InputStage.load(run_dir / "input_stage.json")
    student = load_model(run_dir / "student.h5")
    _, da4ml = cost_model(trace_student(student, stage, recipe.firmware), clock)
    return {
        "run": str(run_dir),
        "accuracy": metrics["student"]["accuracy"],
        "latency_cycles": da4ml["pipeline_stages"],
        "latency_ns": da4ml["pipeline_stages"] * clock,
        "register_bits": da4ml["register_bits"],
        "da4ml_lut_estimate": da4ml["lut_estimate"],
        "source": "da4ml cost model (estimate; no simulation, no synthesis)",
    }


def print_table(rows: list[dict], columns: dict[str, str]) -> None:
    """One line per run; `columns` maps each header to the format of its cell."""
    header = " | ".join(["run", "accuracy", *columns])
    print(header)
    print("-" * len(header))
    for r in rows:
        cells = [Path(r["run"]).name, f"{r['accuracy']:.4f}"]
        print(" | ".join(cells + [cell.format(**r) for cell in columns.values()]))


ESTIMATE_COLUMNS = {
    "stages / ns": "{latency_cycles} / {latency_ns:g}",
    "register bits": "{register_bits}",
    "LUT (da4ml est.)": "{da4ml_lut_estimate:.0f}",
}
RTL_COLUMNS = {
    "latency (cycles / ns)": "{latency_cycles} / {latency_ns:g}",
    "LUT (Yosys)": "{lut} ({yosys})",
    "FF": "{ff}",
    "DSP": "{dsp}",
    "LUT (da4ml est.)": "{da4ml_lut_estimate:.0f}",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, default=[ROOT / "runs" / "default"])
    parser.add_argument("--jets", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "firmware" / "bench_rtl")
    parser.add_argument(
        "--estimate-only", action="store_true", help="da4ml cost model only: no Verilator, no Yosys"
    )
    parser.add_argument(
        "--yosys",
        choices=["flat", "per_stage"],
        help="how Yosys counts (firmware.yosys): per_stage for designs too large to flatten "
        "[default: the recipe's]",
    )
    args = parser.parse_args()
    for run in args.runs:
        if not (run / "student.h5").is_file():
            parser.error(f"{run}: no student.h5 (train it with trigger train-and-compress)")
    names = [run.name for run in args.runs]
    if len(set(names)) < len(names):  # each run's RTL goes to OUT/<its directory name>/rtl
        parser.error("two runs share a directory name: bench them with separate --out")

    if args.estimate_only:
        print_table([estimate(run) for run in args.runs], ESTIMATE_COLUMNS)
        return
    rows = [bench(run, args.out, args.jets, args.yosys) for run in args.runs]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_rtl.json").write_text(json.dumps(rows, indent=2) + "\n")
    print_table(rows, RTL_COLUMNS)
    print(f"source: {rows[0]['source'] if rows else '-'}; written {args.out / 'bench_rtl.json'}")


if __name__ == "__main__":
    main()
