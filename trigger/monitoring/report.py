"""The monitor's plots (PNG), `report.md`, and `report.html` with the plots inlined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trigger.monitoring import drift
from trigger.plots import pyplot, save_png

# Quantities drawn in the "most moved" figure, and rows of the report's table.
MOST_MOVED = 6
TABLE_ROWS = 20


def _panel(ax: Any, name: str, reference: np.ndarray, counts: np.ndarray, edges: np.ndarray):
    """Reference and new shares per bin (bins in value order), the new with binomial errors."""
    m, n = reference.sum(), max(counts.sum(), 1)
    index = np.arange(len(reference))
    ax.step(index, reference / m, where="mid", color="tab:gray", label="reference")
    shares = counts / n
    ax.errorbar(index, shares, yerr=np.sqrt(shares * (1 - shares) / n), fmt=".",
                color="tab:red", label="new")  # fmt: skip
    ticks = index[:: max(1, len(index) // 5)]
    ax.set_xticks(ticks, [f"<{edges[t]:.3g}" if t < len(edges) else "rest" for t in ticks])
    ax.set_title(name)
    ax.set_ylabel("share of entries")
    ax.grid(alpha=0.3)


def _figure(names: list[str], reference: dict, counted: Any, path: Path) -> Path:
    plt = pyplot()
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        edges = counted.edges[name]
        _panel(ax, name, drift.histogram(reference[name][1], edges), counted.counts[name], edges)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    axes.flat[0].legend()
    return save_png(fig, path)


def _input_map(summary: dict, path: Path) -> Path | None:
    """Effect size of every per-rank input test: features by candidate rank, flags marked."""
    rows = [r for r in summary["quantities"] if r["kind"] == "input" and " #" in r["name"]]
    if not rows:
        return None
    features = sorted({r["name"].split(" #")[0] for r in rows})
    ranks = max(int(r["name"].split(" #")[1]) for r in rows)
    effect = np.full((len(features), ranks), np.nan)
    plt = pyplot()
    # Constrained from the start: a colorbar made before the layout engine is set breaks it.
    size = (min(14, 2 + 0.35 * ranks), 1.2 + 0.5 * len(features))
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    for r in rows:
        feature, rank = r["name"].split(" #")
        f, k = features.index(feature), int(rank) - 1
        effect[f, k] = r["effect"]
        if r["flagged"]:
            ax.text(k, f, "x", ha="center", va="center", color="white", fontsize=9)
    top = max(float(np.nanmax(effect)), 0.05)  # a colour scale even when nothing moved
    image = ax.imshow(effect, aspect="auto", cmap="viridis", vmin=0, vmax=top)
    ax.set_yticks(range(len(features)), features)
    ax.set_xticks(range(0, ranks, 4), [str(k + 1) for k in range(0, ranks, 4)])
    ax.set_xlabel("candidate rank (by pT)")
    fig.colorbar(image, ax=ax, label="Cohen's w (x: flagged)")
    return save_png(fig, path)


def plots(reference: dict, counted: Any, summary: dict, out: Path) -> dict[str, str]:
    """Most-moved quantities, the firmware's scores, and the input map; name -> file."""
    tested = [r["name"] for r in summary["quantities"]]
    scores = [name for name in tested if reference[name][0] == "score"]
    made = {
        "moved": _figure(tested[:MOST_MOVED], reference, counted, out / "moved.png"),
        "scores": _figure(sorted(scores), reference, counted, out / "scores.png"),
        "inputs": _input_map(summary, out / "inputs.png"),
    }
    return {name: path.name for name, path in made.items() if path is not None}


def _jets(value: int | None) -> str:
    return "never (reference too small)" if value is None else f"{value:,}"


def _table(rows: list[dict]) -> list[str]:
    lines = [
        "| quantity | kind | chi2 / dof | p-value | Cohen's w | flagged | jets to flag this "
        "shift | jets to flag w = effect |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        # A shift not even nominally significant is noise: no jets to state for it.
        this = _jets(r["jets_to_flag_this_shift"]) if r["p_value"] < 0.05 else "no shift seen"
        lines.append(
            f"| {r['name']} | {r['kind']} | {r['statistic']:.1f} / {r['dof']} | "
            f"{r['p_value']:.2g} | {r['effect']:.3f} | {'**yes**' if r['flagged'] else 'no'} "
            f"| {this} | {_jets(r['jets_to_flag_effect'])} |"
        )
    return lines


def render_markdown(summary: dict, plots: dict[str, str]) -> str:
    s = summary["settings"]
    verdict = "DRIFT" if summary["drift"] else "no drift"
    halving = summary["reference_halvings"]
    kinds = {}
    for r in summary["quantities"]:
        k = kinds.setdefault(r["kind"], {"tests": 0, "flagged": 0, "largest": 0.0})
        k["tests"] += 1
        k["flagged"] += r["flagged"]
        k["largest"] = max(k["largest"], r["effect"])
    flagged = ", ".join(summary["flagged"][:10]) or "none"
    if len(summary["flagged"]) > 10:
        flagged += f" and {len(summary['flagged']) - 10} more"
    lines = [
        f"# Drift monitor: {verdict}",
        f"Firmware `{summary['firmware']}`; new file `{summary['data']}` ({summary['jets']:,} "
        f"jets, no labels used) against the run's held-out jets of "
        f"`{summary['reference']['data']}` ({summary['reference']['jets']:,} jets).",
        f"{summary['tests']} binned chi-square tests (up to {s['bins']} reference-quantile bins "
        f"each). A file of the reference's conditions is flagged with probability at most "
        f"{s['false_alarm']:g}: each test flags at p < {summary['threshold']:.2g} (Bonferroni). "
        f"**Flagged: {len(summary['flagged'])}** ({flagged}).",
        f"False-alarm check: {halving['flagged']} of {halving['halvings']} random halvings of the "
        f"reference were flagged, half against half (expected at most "
        f"{s['false_alarm'] * halving['halvings']:.2g}).",
        "| kind | tests | flagged | largest Cohen's w |\n|---|---|---|---|\n"
        + "\n".join(
            f"| {kind} | {k['tests']} | {k['flagged']} | {k['largest']:.3f} |"
            for kind, k in kinds.items()
        ),
        f"The {TABLE_ROWS} lowest p-values. Cohen's w is the shift's size above the noise "
        "floor; the jets columns give the new-file jets at which a test flags this shift, or one "
        f"of w = {s['effect']:g}, with probability {s['power']:g}.",
        "\n".join(_table(summary["quantities"][:TABLE_ROWS])),
        f"![most moved]({plots['moved']})",
        f"![scores]({plots['scores']})",
    ]
    if "inputs" in plots:
        lines.append(f"![inputs by candidate rank]({plots['inputs']})")
    return "\n\n".join(lines) + "\n"


def write(summary: dict, plots: dict[str, str], out: Path) -> None:
    from trigger.validation.report import render_html

    text = render_markdown(summary, plots)
    (out / "report.md").write_text(text)
    (out / "report.html").write_text(render_html(text, out, "trigger monitor"))
