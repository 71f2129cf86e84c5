"""HGQ against QKeras: both sweeps' trials and fronts on one accuracy-against-LUT plot.

    .venv/bin/trigger sweep models/sweeps/pareto.yaml --out sweeps/pareto
    .venv/bin/trigger sweep models/sweeps/hgq.yaml --out sweeps/hgq [--confirm-front]
    .venv/bin/trigger sweep models/sweeps/hgq_widths.yaml --out sweeps/hgq_widths
    .venv/bin/python scripts/bench_hgq.py sweeps/pareto sweeps/hgq sweeps/hgq_widths \
        --out docs/hgq_fronts.png

The first sweep is QKeras's, the others HGQ's (their trials make one HGQ front). Every sweep
trains label-only for at most 20 epochs on the same data, so the fronts compare like for like.
LUTs are Yosys's where a sweep confirmed its front (`--confirm-front`), da4ml's estimate
elsewhere, as in each sweep's own pareto.png. Prints every HGQ trial with its settings and bit
widths, and the references (the QKeras default and the literature Deep Sets).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from trigger.config import load_recipe
from trigger.plots import log_x, pyplot, save_png
from trigger.sweep.results import non_dominated

COLOURS = {"QKeras": "tab:blue", "HGQ": "tab:orange"}


def read_trials(sweep: Path) -> list[dict]:
    """Completed trials: accuracy and LUT (measured where confirmed), latency, parameters."""
    with (sweep / "trials.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["state"] == "complete" and r["lut"]]
    for r in rows:
        r["LUT"] = float(r.get("measured_lut") or r["lut"])
        r["accuracy"] = float(r["accuracy"])
    return rows


def front(rows: list[dict]) -> list[dict]:
    points = np.array([[r["accuracy"], r["LUT"]] for r in rows])
    keep = non_dominated(points, ["maximize", "minimize"])
    members = [r for r, kept in zip(rows, keep, strict=True) if kept]
    return sorted(members, key=lambda r: r["LUT"])


def plot(sweeps: dict[str, list[dict]], references: dict[str, dict], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    for method, rows in sweeps.items():
        colour = COLOURS[method]
        ax.scatter([r["LUT"] for r in rows], [r["accuracy"] for r in rows], s=22, alpha=0.5,
                   color=colour)  # fmt: skip
        members = front(rows)
        ax.step([r["LUT"] for r in members], [r["accuracy"] for r in members], where="post",
                color=colour, lw=1.5, label=f"{method} front")  # fmt: skip
        ax.scatter([r["LUT"] for r in members], [r["accuracy"] for r in members], s=60,
                   color=colour, edgecolors="k", zorder=3)  # fmt: skip
    for (name, figures), marker in zip(references.items(), "*P", strict=False):
        ax.scatter(figures.get("measured", {}).get("lut") or figures["lut"], figures["accuracy"],
                   marker=marker, s=170, color="tab:red", edgecolors="k", zorder=4,
                   label=f"{name} (QKeras)")  # fmt: skip
    log_x(ax)
    ax.set_xlabel("LUT, whole path, L1 words to logits [da4ml estimate; Yosys where confirmed]")
    ax.set_ylabel("student test accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    return save_png(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("qkeras", type=Path, help="output directory of the QKeras sweep")
    parser.add_argument("hgq", type=Path, nargs="+", help="output directories of HGQ sweeps")
    parser.add_argument("--out", type=Path, default=Path("docs/hgq_fronts.png"))
    args = parser.parse_args()
    for sweep in (args.qkeras, *args.hgq):
        if not (sweep / "trials.csv").is_file():
            parser.error(f"{sweep}: no trials.csv (run trigger sweep first)")
    hgq = [row for sweep in args.hgq for row in read_trials(sweep)]
    sweeps = {"QKeras": read_trials(args.qkeras), "HGQ": hgq}
    references: dict[str, dict] = {}
    for sweep in args.hgq:
        references |= json.loads((sweep / "pareto.json").read_text())["references"]
    print("design | accuracy | LUT | FF | latency [ns] | weight bits | activation bits | zero-bit")
    for name, f in references.items():
        print(f"{name} (QKeras) | {f['accuracy']:.4f} | {f['lut']} | {f['ff']} | "
              f"{f['latency_ns']:g} | - | - | -")  # fmt: skip
    for r in hgq:
        metrics = json.loads(Path(r["directory"], "run", "metrics.json").read_text())["student"]
        recipe = load_recipe(Path(r["directory"], "run", "recipe.yaml"))
        arch = recipe.architecture
        settings = (f"N {recipe.data.n_constituents}, phi {arch.phi}, rho {arch.rho}, "
                    f"beta {recipe.quantization.hgq.beta:g}")  # fmt: skip
        print(f"HGQ {settings} | {r['accuracy']:.4f} | {r['LUT']:.0f} | "
              f"{r['ff']} | {r['latency_ns']} | {metrics['mean_weight_bits']:.2f} | "
              f"{metrics['mean_activation_bits']:.2f} | "
              f"{metrics['zero_bit_weight_fraction']:.2f}")  # fmt: skip
    print(f"written {plot(sweeps, references, args.out)}")


if __name__ == "__main__":
    main()
