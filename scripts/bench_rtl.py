"""Accuracy, latency and resources of trained students from the open RTL flow (no Vivado).

    .venv/bin/python scripts/bench_rtl.py [RUN ...] [--jets 2000] [--out firmware/bench_rtl]

RUN defaults to runs/default; pass e.g. a literature Deep Sets run (phi [32, 32, 32], rho [32])
as a second argument. For each run: accuracy from RUN/metrics.json (the student's), latency
(Verilator, one jet per clock, bit-exact against QKeras on `--jets` test jets), LUT/FF/DSP from
Yosys synth_xilinx and da4ml's own LUT estimate. Writes OUT/NAME/rtl/ and OUT/bench_rtl.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]


def bench(run_dir: Path, out_dir: Path, jets: int) -> dict:
    from trigger.config import load_recipe
    from trigger.data.loader import Preprocessing
    from trigger.hls.stage import emulation_sample
    from trigger.rtl import emit_rtl
    from trigger.taggers import load_model

    recipe = load_recipe(run_dir / "recipe.yaml")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    preprocess = Preprocessing.load(run_dir / "preprocess.json")
    x = emulation_sample(recipe, preprocess, None, jets)
    start = time.perf_counter()
    figures = emit_rtl(
        load_model(run_dir / "student.h5"),
        out_dir / run_dir.name / "rtl",
        recipe.firmware,
        x,
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
        "bit_exact_fraction": figures["bit_exact"]["bit_exact_fraction"],
        "jets": figures["bit_exact"]["jets"],
        "clock_period_ns": figures["clock_period_ns"],
        "seconds": round(time.perf_counter() - start, 1),
        "source": figures["source"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, default=[ROOT / "runs" / "default"])
    parser.add_argument("--jets", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "firmware" / "bench_rtl")
    args = parser.parse_args()

    rows = [bench(run, args.out, args.jets) for run in args.runs]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_rtl.json").write_text(json.dumps(rows, indent=2) + "\n")
    header = "run | accuracy | latency (cycles / ns) | LUT (Yosys) | FF | DSP | LUT (da4ml est.)"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{Path(r['run']).name} | {r['accuracy']:.4f} | {r['latency_cycles']} / "
            f"{r['latency_ns']:g} | {r['lut']} | {r['ff']} | {r['dsp']} | "
            f"{r['da4ml_lut_estimate']:.0f}"
        )
    print(f"source: {rows[0]['source'] if rows else '-'}; written {args.out / 'bench_rtl.json'}")


if __name__ == "__main__":
    main()
