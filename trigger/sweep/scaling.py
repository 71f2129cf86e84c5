"""Scaling laws of a sweep over model sizes and training-set sizes.

The test error (1 - accuracy) of the float reference and of the compressed student is fitted,
each on its own, by eps(N, P) = a (P/P0)^-alpha + b (N/N0)^-beta + c, with P the parameters
(the student's nonzero ones), N the training jets, P0 and N0 the smallest of each in the sweep,
and each point weighted by its binomial error on the test jets. iminuit's MIGRAD finds the
minimum, HESSE the uncertainties. The generalisation gap (test minus train cross-entropy) is
set against sqrt(b/n), b the model's size in bits (nonzero weights times their widths) and n
the training jets: the shape of the O(sqrt(b/n)) compression bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigger.errors import TriggerError
from trigger.io import write_json
from trigger.plots import log_x, pyplot, save_png

PARAMETERS = ("a", "alpha", "b", "beta", "c")
MODELS = {
    "float": ("float_accuracy", "float_parameters", "float_test_loss", "float_train_loss"),
    "student": ("accuracy", "nonzero_parameters", "student_test_loss", "student_train_loss"),
}


@dataclass(frozen=True)
class Points:
    """One model's test errors over (N, P), with their binomial errors."""

    n: np.ndarray
    p: np.ndarray
    error: np.ndarray
    sigma: np.ndarray


def scaling_law(n: np.ndarray, p: np.ndarray, a, alpha, b, beta, c) -> np.ndarray:
    return a * p**-alpha + b * n**-beta + c


def fit_scaling(points: Points) -> dict[str, Any]:
    """Fit the law to `points`; values and HESSE errors of a, alpha, b, beta, c."""
    from iminuit import Minuit
    from iminuit.cost import LeastSquares

    if len(points.n) <= len(PARAMETERS):
        msg = f"a scaling fit needs more than {len(PARAMETERS)} points, got {len(points.n)}"
        raise TriggerError(msg)
    n0, p0 = points.n.min(), points.p.min()
    x = np.vstack([points.n / n0, points.p / p0])

    def model(xy: np.ndarray, a, alpha, b, beta, c):
        return scaling_law(xy[0], xy[1], a, alpha, b, beta, c)

    spread = float(np.ptp(points.error)) or 0.01
    least_squares = LeastSquares(x, points.error, points.sigma, model)
    minuit = Minuit(least_squares, a=spread, alpha=0.5, b=spread, beta=0.5, c=points.error.min())
    minuit.limits["a"] = minuit.limits["b"] = (0, None)
    minuit.limits["alpha"] = minuit.limits["beta"] = (0, 4)
    minuit.limits["c"] = (0, 1)
    minuit.migrad()
    minuit.hesse()
    return {
        "law": "eps = a (P/P0)^-alpha + b (N/N0)^-beta + c",
        "P0": float(p0),
        "N0": float(n0),
        "values": {k: float(minuit.values[k]) for k in PARAMETERS},
        "errors": {k: float(minuit.errors[k]) for k in PARAMETERS},
        "chi2": float(minuit.fval),
        "ndof": len(points.n) - len(PARAMETERS),
        "valid": bool(minuit.valid),
        "points": len(points.n),
    }


def _points(rows: list[dict[str, Any]], model: str) -> Points:
    accuracy, parameters, _, _ = MODELS[model]
    n = np.array([r["train_jets"] for r in rows], dtype=float)
    p = np.array([r[parameters] for r in rows], dtype=float)
    error = 1 - np.array([r[accuracy] for r in rows], dtype=float)
    tests = np.array([r["test_jets"] for r in rows], dtype=float)
    return Points(n, p, error, np.sqrt(np.maximum(error * (1 - error), 1e-4) / tests))


def _bits(row: dict[str, Any], model: str) -> float:
    # The float reference stores 32-bit floats; its zero weights are as rare as chance makes them.
    return row["student_bits"] if model == "student" else 32.0 * row["float_parameters"]


def plot_scaling(rows: list[dict[str, Any]], fits: dict[str, dict], path: Path) -> Path:
    """Test error against training jets, one colour per model size, with the fitted law."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    sizes = sorted({r["float_parameters"] for r in rows})
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    for ax, model in zip(axes, MODELS, strict=True):
        fit, data = fits[model], _points(rows, model)
        values = fit["values"]
        for size, colour in zip(sizes, colours, strict=True):
            pick = np.array([r["float_parameters"] == size for r in rows])
            order = np.argsort(data.n[pick])
            n, p = data.n[pick][order], data.p[pick][order]
            ax.errorbar(
                n,
                data.error[pick][order],
                data.sigma[pick][order],
                fmt="o",
                color=colour,
                label=f"{size} parameters (float)",
            )
            grid = np.geomspace(n.min(), n.max(), 50)
            curve = scaling_law(grid / fit["N0"], np.interp(grid, n, p) / fit["P0"], **values)
            ax.plot(grid, curve, color=colour, lw=1)
        errors = fit["errors"]
        ax.set_title(
            f"{model}: alpha = {values['alpha']:.2f} ± {errors['alpha']:.2f}, "
            f"beta = {values['beta']:.2f} ± {errors['beta']:.2f}, c = {values['c']:.3f}",
            fontsize=9,
        )
        log_x(ax)
        ticks = sorted(set(data.n))
        ax.set_xticks(ticks, [f"{t / 1000:g}k" for t in ticks])
        ax.set_xlabel("training jets N")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("test error 1 - accuracy")
    axes[0].legend(fontsize=8)
    return save_png(fig, path)


def plot_generalisation(rows: list[dict[str, Any]], path: Path) -> Path:
    """Test minus train cross-entropy against sqrt(bits / training jets)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    for model, marker in zip(MODELS, "so", strict=True):
        _, _, test, train = MODELS[model]
        x = [np.sqrt(_bits(r, model) / r["train_jets"]) for r in rows]
        gap = [r[test] - r[train] for r in rows]
        ax.scatter(x, gap, marker=marker, label=model, alpha=0.8)
    log_x(ax)
    ax.set_xlabel("sqrt(b / n): b model bits (nonzero weights x width), n training jets")
    ax.set_ylabel("generalisation gap: test - train loss")
    ax.axhline(0, color="k", lw=0.6)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_png(fig, path)


def write_scaling(rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """scaling.json, scaling.png and generalisation.png in `out` from completed trials' figures."""
    fits = {model: fit_scaling(_points(rows, model)) for model in MODELS}
    write_json(out / "scaling.json", fits)
    plot_scaling(rows, fits, out / "scaling.png")
    plot_generalisation(rows, out / "generalisation.png")
    return fits
