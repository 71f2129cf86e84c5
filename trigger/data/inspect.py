"""`trigger data inspect`: per-class counts and the observables a physicist checks first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trigger.config import CLASS_NAMES
from trigger.data.layout import OpenedJets
from trigger.data.loader import read_jets
from trigger.io import check_file_output
from trigger.plots import is_trigger_png, pyplot, save_png


def peak(values: np.ndarray, width: float = 2.0, top: float = 300.0) -> float:
    """Centre of the most populated `width`-GeV bin in [0, top): where a mass peaks."""
    counts, edges = np.histogram(values, bins=np.arange(0.0, top + width, width))
    i = int(np.argmax(counts))
    return float(0.5 * (edges[i] + edges[i + 1]))


def summarize(path: str | Path) -> dict[str, dict[str, float]]:
    """Per class: jets, median mass, median and peak soft-drop mass (GeV), mean multiplicity."""
    with OpenedJets(path) as f:
        f.check_finite()
    sample = read_jets(path, n_constituents=1)
    labels = sample.labels
    summary = {}
    for c, name in enumerate(CLASS_NAMES):
        members = labels == c
        row = {"jets": int(members.sum())}
        for key, stat, column in (
            ("median_mass", np.median, "mass"),
            ("median_softdrop_mass", np.median, "mass_mmdt"),
            ("softdrop_mass_peak", peak, "mass_mmdt"),
            ("mean_multiplicity", np.mean, "multiplicity"),
        ):
            values = sample.observables.get(column)
            ok = values is not None and members.any()
            row[key] = round(float(stat(values[members])), 2) if ok else None
        summary[name] = row
    return summary


def plot(path: str | Path, png: str | Path, replace: bool = False) -> Path:
    """Per-class distributions of jet mass, soft-drop mass and multiplicity, one PNG; only an
    earlier plot of this command is replaced, and only with `replace`."""
    png = Path(png)
    check_plot(path, png, replace)
    plt = pyplot()
    sample = read_jets(path, n_constituents=1)
    labels = sample.labels
    panels = (
        ("mass", "jet mass [GeV]", np.linspace(0, 300, 61)),
        ("mass_mmdt", "soft-drop mass [GeV]", np.linspace(0, 300, 61)),
        ("multiplicity", "constituent multiplicity", np.arange(0, 204, 4)),
    )
    shown = [p for p in panels if p[0] in sample.observables]
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4), squeeze=False)
    for ax, (column, title, bins) in zip(axes[0], shown, strict=True):
        for c, name in enumerate(CLASS_NAMES):
            values = sample.observables[column][labels == c]
            if len(values):
                ax.hist(values, bins=bins, histtype="step", density=True, label=name, lw=1.5)
        ax.set_xlabel(title)
        ax.set_ylabel("density (unit area per class)")
    axes[0][0].legend(title="class")
    fig.suptitle(f"{Path(path).name}: {len(labels)} jets")
    return save_png(fig, png, lambda final: check_plot(path, final, replace))


def check_plot(path: str | Path, png: Path, replace: bool = False) -> None:
    """Refuse a plot path that is the data file, or holds anything but an earlier plot."""
    check_file_output(png, "data inspect", is_trigger_png, inputs=[path], replace=replace)
