"""Design-space sweeps and scaling laws: Optuna chooses recipes, Dask trains them.

Public API:
    load_sweep(path) -> (SweepSpec, base Recipe)        one-line errors before any trial
    sweep(spec, out, data, client, confirm=False, log=print) -> pareto.json payload
    non_dominated(points, directions) -> mask           the Pareto filter
    fit_scaling(points) -> dict                         eps(N, P) = a P^-alpha + b N^-beta + c
    recipe_from_trial(directory) -> YAML text           a trial as a recipe file

A trial is the base recipe plus `--set` overrides run through `train_and_compress` and
da4ml's cost model, in the same artifact layout as `trigger run` (see `trigger.sweep.trial`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trigger.io import Log
from trigger.sweep.driver import trial_recipe as recipe_from_trial
from trigger.sweep.results import non_dominated
from trigger.sweep.scaling import Points, fit_scaling
from trigger.sweep.spec import SweepSpec, load_sweep

__all__ = [
    "Points",
    "SweepSpec",
    "fit_scaling",
    "load_sweep",
    "non_dominated",
    "recipe_from_trial",
    "sweep",
]


def sweep(
    spec: SweepSpec, out: Path, data: Path, client: Any, confirm: bool = False, log: Log = print
) -> dict[str, Any]:
    """Run or resume the sweep into `out`, write its results; with `confirm`, measure the
    front's members through Verilator and Yosys and write the results again."""
    from trigger.data.layout import OpenedJets
    from trigger.sweep.driver import confirm_front, run_sweep
    from trigger.sweep.results import completed, trial_rows, write_results
    from trigger.sweep.scaling import write_scaling

    with OpenedJets(data):  # a file no trial can read is refused before the first
        pass
    study = run_sweep(spec, out, data, client, log)
    summary = write_results(study, spec, out)
    if confirm and summary["front"]:
        confirm_front(summary["front"], out, data, client, log)
        summary = write_results(study, spec, out)
    if spec.scaling:
        rows = completed(trial_rows(study, spec, out / "trials"))
        summary["scaling"] = write_scaling([r["figures"] for r in rows], out)
    return summary
