"""What a sweep leaves for a person: trials.csv, the Pareto front (pareto.json, pareto.png).

Costs are da4ml's cost-model estimates of the whole firmware path unless a front member was
confirmed (`trigger sweep --confirm-front`): then its LUT, FF, DSP and latency are Yosys's and
Verilator's, and the plot says so.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trigger.io import atomic_path, write_json
from trigger.plots import log_x, pyplot, save_png
from trigger.sweep.spec import SweepSpec
from trigger.sweep.trial import MEASURED


def non_dominated(points: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Mask of the rows of `points` (one column per objective) that no other row dominates:
    at least as good in every objective and better in one. `directions` are `maximize` or
    `minimize` per column."""
    points = np.asarray(points, dtype=float).reshape(len(points), len(directions))
    costs = points * np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    at_least = np.all(costs[:, None, :] <= costs[None, :, :], axis=2)  # [j, i]: j >= i everywhere
    better = np.any(costs[:, None, :] < costs[None, :, :], axis=2)
    return ~np.any(at_least & better, axis=0)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _error(directory: Path) -> str:
    path = directory / "error.txt"
    return path.read_text().splitlines()[0] if path.is_file() else ""


def design_row(directory: Path) -> dict[str, Any]:
    """One trial's or reference's record: parameters, figures (measured where confirmed)."""
    record = _read_json(directory / "trial.json") or {}
    figures = _read_json(directory / "figures.json")
    measured = _read_json(directory / MEASURED)
    return {
        "directory": str(directory),
        "params": record.get("params", {}),
        "figures": figures,
        "measured": measured,
        "error": _error(directory),
    }


def cost(row: dict[str, Any], key: str) -> float:
    """A cost figure: measured when the design was confirmed, else the estimate."""
    source = row["measured"] if row["measured"] and key in row["measured"] else row["figures"]
    return float(source[key])


def trial_rows(study: Any, spec: SweepSpec, trials_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name == "PRUNED":
            continue  # a repeated proposal, never run (see driver._repeats)
        row = design_row(trials_dir / f"{trial.number:04d}")
        rows.append(row | {"number": trial.number, "state": trial.state.name.lower()})
    return rows


def reference_rows(spec: SweepSpec, references_dir: Path) -> list[dict[str, Any]]:
    return [design_row(references_dir / r.stem) | {"name": r.stem} for r in spec.references]


def completed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of trials that completed and left their figures."""
    return [r for r in rows if r["state"] == "complete" and r["figures"]]


def front(rows: list[dict[str, Any]], spec: SweepSpec) -> list[dict[str, Any]]:
    """The completed trials on the Pareto front of the sweep's objectives."""
    done = completed(rows)
    if not done:
        return []
    points = [
        [cost(r, name) if name != "accuracy" else r["figures"][name] for name in spec.objectives]
        for r in done
    ]
    mask = non_dominated(np.array(points), spec.directions)
    return sorted(
        (r for r, keep in zip(done, mask, strict=True) if keep), key=lambda r: cost(r, "lut")
    )


def _csv(rows: list[dict[str, Any]], spec: SweepSpec) -> str:
    figure_keys: list[str] = []
    for row in rows:
        for key in row["figures"] or {}:
            if key not in figure_keys:
                figure_keys.append(key)
    measured_keys = ["measured_lut", "measured_ff", "measured_dsp", "measured_latency_ns"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["number", "state", *spec.space, *figure_keys, *measured_keys, "error", "directory"]
    )
    for row in rows:
        params = [json.dumps(row["params"][k]) if k in row["params"] else "" for k in spec.space]
        figures = [(row["figures"] or {}).get(k, "") for k in figure_keys]
        measured = [
            (row["measured"] or {}).get(k.removeprefix("measured_"), "") for k in measured_keys
        ]
        writer.writerow(
            [
                row["number"],
                row["state"],
                *params,
                *figures,
                *measured,
                row["error"],
                row["directory"],
            ]
        )
    return out.getvalue()


def plot_front(rows: list[dict], members: list[dict], references: list[dict], path: Path) -> Path:
    """Accuracy against LUTs for every completed trial, latency as colour; the front joined,
    the references marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    done = completed(rows)
    confirmed = any(r["measured"] for r in members)
    if done:
        latency = [cost(r, "latency_ns") for r in done]
        points = ax.scatter(
            [cost(r, "lut") for r in done],
            [r["figures"]["accuracy"] for r in done],
            c=latency,
            cmap="viridis",
            s=28,
            zorder=2,
        )
        fig.colorbar(points, ax=ax, label="latency [ns]")
    if members:
        ax.step(
            [cost(r, "lut") for r in members],
            [r["figures"]["accuracy"] for r in members],
            where="post",
            color="k",
            lw=1,
            zorder=1,
            label="Pareto front",
        )
        ax.scatter(
            [cost(r, "lut") for r in members],
            [r["figures"]["accuracy"] for r in members],
            facecolors="none",
            edgecolors="k",
            s=90,
            zorder=3,
        )
    for reference, marker in zip(references, "*PXD", strict=False):
        if reference["figures"]:
            ax.scatter(
                cost(reference, "lut"),
                reference["figures"]["accuracy"],
                marker=marker,
                s=160,
                color="tab:red",
                edgecolors="k",
                zorder=4,
                label=reference["name"],
            )
    log_x(ax)
    source = "Yosys (front members), da4ml estimate (others)" if confirmed else "da4ml estimate"
    ax.set_xlabel(f"LUT, whole path, L1 words to logits [{source}]")
    ax.set_ylabel("student test accuracy")
    ax.grid(alpha=0.3, which="both")
    if members or references:
        ax.legend(loc="lower right")
    return save_png(fig, path)


def front_command(out: Path, row: dict[str, Any]) -> str:
    return (
        f"trigger recipe from-trial {row['directory']} --out models/{out.name}-{row['number']}.yaml"
    )


def write_results(study: Any, spec: SweepSpec, out: Path) -> dict[str, Any]:
    """trials.csv, pareto.json and pareto.png in `out`; returns the pareto.json payload."""
    rows = trial_rows(study, spec, out / "trials")
    references = reference_rows(spec, out / "references")
    members = front(rows, spec)
    with atomic_path(out / "trials.csv") as tmp:
        tmp.write_text(_csv(rows, spec))
    summary = {
        "objectives": dict(zip(spec.objectives, spec.directions, strict=True)),
        "cost_source": "da4ml cost model (estimate) unless 'measured' is set (Yosys, Verilator)",
        "trials": {state: sum(r["state"] == state for r in rows) for state in ("complete", "fail")},
        "front": [
            {
                "number": r["number"],
                "params": r["params"],
                "figures": r["figures"],
                "measured": r["measured"],
                "recipe": front_command(out, r),
            }
            for r in members
        ],
        "references": {r["name"]: r["figures"] or {"error": r["error"]} for r in references},
    }
    write_json(out / "pareto.json", summary)
    plot_front(rows, members, references, out / "pareto.png")
    return summary
