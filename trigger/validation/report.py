"""Plots (PNG), `report.md`, and a self-contained `report.html` with the plots inlined."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np

from trigger.config import CLASS_NAMES
from trigger.plots import pyplot, save_png
from trigger.validation.gates import PASSED, UNDECIDED
from trigger.validation.hardware import HARDWARE_KEYS
from trigger.validation.metrics import SIGNALS
from trigger.validation.observables import OBSERVABLE_LABELS, selected

STYLES = {
    "baseline": {"color": "tab:green", "ls": (0, (1, 1))},
    "teacher": {"color": "tab:gray", "ls": ":"},
    "float": {"color": "tab:blue", "ls": "-"},
    "student": {"color": "tab:orange", "ls": "--"},
    "firmware": {"color": "tab:red", "ls": "-."},
}


def plot_roc(curves: dict[str, dict[str, tuple]], path: Path) -> Path:
    """Per class: background efficiency (log) versus signal efficiency, one curve a predictor."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(CLASS_NAMES), figsize=(4 * len(CLASS_NAMES), 3.6))
    for ax, name in zip(axes, CLASS_NAMES, strict=True):
        for predictor, per_class in curves.items():
            fpr, tpr = per_class[name]
            ax.plot(tpr, np.maximum(fpr, 1e-5), label=predictor, lw=1.4, **STYLES[predictor])
        ax.set_yscale("log")
        ax.set_xlabel(f"efficiency, true {name}")
        ax.set_title(f"{name} vs rest")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mistag rate, other classes")
    axes[0].legend()
    return save_png(fig, path)


def plot_observables(
    predictions: dict[str, np.ndarray],
    labels: np.ndarray,
    observables: dict[str, np.ndarray],
    target: str,
    efficiency: float,
    path: Path,
) -> Path:
    """Background jets selected as `target`: each predictor's distributions, ratio to float."""
    plt = pyplot()
    names = [n for n in OBSERVABLE_LABELS if n in observables]
    fig, axes = plt.subplots(
        2, len(names), figsize=(3.6 * len(names), 4.6), sharex="col",
        gridspec_kw={"height_ratios": [3, 1]},
    )  # fmt: skip
    t = CLASS_NAMES.index(target)
    background = labels != t
    for column, obs in enumerate(names):
        values = observables[obs]
        # Central 99% of all test jets: a few outliers would squeeze every histogram flat.
        edges = np.linspace(*np.percentile(values, [0.5, 99.5]), 25)
        counts = {}
        for predictor, logits in predictions.items():
            chosen = selected(logits, labels, t, efficiency) & background
            counts[predictor], _ = np.histogram(values[chosen], bins=edges)
            axes[0, column].stairs(counts[predictor], edges, label=predictor, **STYLES[predictor])
        for predictor, c in counts.items():
            ratio = np.divide(c, counts["float"], out=np.full(len(c), np.nan),
                              where=counts["float"] > 0)  # fmt: skip
            axes[1, column].stairs(ratio, edges, **STYLES[predictor])
        axes[1, column].axhline(1, color="k", lw=0.5)
        axes[1, column].set_ylim(0, 2)
        axes[1, column].set_xlabel(OBSERVABLE_LABELS[obs])
    axes[0, 0].set_ylabel(f"bkg jets tagged {target}")
    axes[1, 0].set_ylabel("/ float")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Background (non-{target}) jets selected as {target} at {efficiency:.0%} "
                 f"{target} efficiency")  # fmt: skip
    return save_png(fig, path)


def plot_efficiency(curves: dict, path: Path) -> Path:
    """Signal and background efficiency versus pT and mass (the sculpting check)."""
    plt = pyplot()
    rows = list(curves)
    targets = list(next(iter(curves.values())))
    fig, axes = plt.subplots(len(rows), len(targets), figsize=(4.2 * len(targets), 3.3 * len(rows)),
                             squeeze=False)  # fmt: skip
    for r, obs in enumerate(rows):
        for c, target in enumerate(targets):
            ax = axes[r, c]
            for predictor, groups in curves[obs][target].items():
                for group, marker in (("signal", "o"), ("background", "x")):
                    edges = np.array(groups[group]["edges"])
                    eff = np.array(
                        [np.nan if e is None else e for e in groups[group]["efficiency"]]
                    )
                    centres = 0.5 * (edges[1:] + edges[:-1])
                    ax.plot(centres, eff, marker=marker, ms=3, lw=1,
                            label=f"{predictor} {group}", **STYLES[predictor])  # fmt: skip
            ax.set_yscale("log")
            ax.set_xlabel(OBSERVABLE_LABELS[obs])
            ax.set_title(f"{target} tag")
            ax.grid(alpha=0.3)
        axes[r, 0].set_ylabel("efficiency")
    axes[0, 0].legend(fontsize=7)
    return save_png(fig, path)


def plot_candidate_view(view: dict, path: Path) -> str:
    """Soft-drop mass of true top jets: all candidates against the firmware's leading N."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    edges = np.linspace(0, 300, 31)
    ax.hist(view["all"], bins=edges, histtype="step", label="all candidates", color="k")
    ax.hist(view["leading"], bins=edges, histtype="step", ls="--", color="tab:red",
            label=f"leading {view['n_candidates']} (the firmware's)")  # fmt: skip
    ax.set_xlabel("soft-drop mass [GeV]")
    ax.set_ylabel(f"true {view['class']} jets")
    ax.legend(fontsize=8)
    save_png(fig, path)
    return path.name


def _candidate_view_section(view: dict | None, plots: dict[str, str]) -> list[str]:
    if not view or not view["jets"]:
        return []
    return [
        f"## What {view['n_candidates']} candidates see",
        f"Soft-drop mass (C/A, beta 0, z_cut 0.1) of {view['jets']} true {view['class']} jets of "
        f"{view['data']} from all their candidates and from the leading "
        f"{view['n_candidates']}, the firmware's input ({view['jets_with_more_candidates']} of "
        f"them have more): median {view['median_all']:.1f} GeV against "
        f"{view['median_leading']:.1f} GeV, median per-jet shift "
        f"{view['median_shift']:+.1f} GeV. No tagger fed these candidates sees the rest.",
        f"![candidate view]({plots['candidate_view']})",
    ]


def plot_hardware(hardware: dict, path: Path) -> Path:
    plt = pyplot()
    keys = [k for k in ("lut", "ff", "dsp", "bram", "latency_cycles")]
    models = [m for m in ("compressed", "float_reference") if hardware.get(m)]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        values = [max(hardware[model].get(k) or 0, 0.5) for k in keys]
        label = f"{model} ({hardware[model]['source']})"
        ax.bar(np.arange(len(keys)) + i * width, values, width, label=label)
    ax.set_xticks(np.arange(len(keys)) + width * (len(models) - 1) / 2, keys)
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("Hardware: compressed vs float-reference firmware")
    return save_png(fig, path)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _distance_cell(row: dict | None) -> str:
    if not row or row["distance"] is None:
        return "-"
    shift = row.get("mean_shift")
    effect = "" if shift is None else f", {shift:+.2f} sd"
    judge = "" if row.get("judgeable", True) else ", too few"
    star = "*" if row["significant"] else ""
    return f"{row['distance']:.3f}{star} (n={row['n_test']}{effect}{judge})"


def _points(value: float) -> str:
    return f"{100 * value:+.2f}"


def _pm(value: float | None, error: float | None, scale: float = 1.0, digits: int = 2) -> str:
    """`value +- error`, both times `scale` (100: points)."""
    if value is None:
        return "-"
    sign = "+" if scale == 100 else ""
    text = f"{scale * value:{sign}.{digits}f}"
    return text if error is None else f"{text} +- {scale * error:.{digits}f}"


def _shift_predictors(name: str, v: dict) -> list[list]:
    rows = []
    for predictor, p in v["predictors"].items():
        rows.append([
            name, predictor,
            f"{_pm(p['accuracy_nominal'], p['accuracy_nominal_uncertainty'], digits=4)} -> "
            f"{_pm(p['accuracy_shifted'], p['accuracy_shifted_uncertainty'], digits=4)}",
            _pm(p["accuracy_change"], p["accuracy_change_uncertainty"], 100),
            f"{_pm(p['mean_auc_nominal'], p['mean_auc_nominal_uncertainty'], digits=4)} -> "
            f"{_pm(p['mean_auc_shifted'], p['mean_auc_shifted_uncertainty'], digits=4)}",
            _pm(p["mean_auc_change"], p["mean_auc_change_uncertainty"], 100),
        ])  # fmt: skip
    return rows


def _shift_size(v: dict) -> str:
    size = v["size"]
    parts = [
        f"{name} {row['distance']:.3f} ({row['mean_shift']:+.2f} sd)"
        for kind in ("inputs", "observables")
        for name, row in size[kind].items()
        if row["distance"] is not None and row["mean_shift"] is not None
    ]
    return "; ".join(parts) or "-"


def _shift_verdict(name: str, v: dict) -> str:
    if not v["significant"]:
        answer = "compatible with no extra degradation"
    elif v["degradation"] > 0:
        answer = "the firmware degrades more than the float reference"
    else:
        answer = "the firmware degrades less than the float reference"
    share = v["variance_share"]
    text = (
        f"**{name}** ({v['data']}): firmware minus float change "
        f"{_pm(v['firmware_minus_float_accuracy_change'], v['uncertainty'], 100)} points, "
        f"{answer}. Share of the variance: nominal sample {share['nominal']:.0%} "
        f"({v['nominal_jets']} jets), shifted sample {share['shifted']:.0%} ({v['jets']} jets)."
    )
    if v["nominal_limits"]:
        text += (
            " **Warning: the nominal sample limits this verdict**: evaluate on a larger nominal "
            "sample (`trigger validate --data`) before reading it."
        )
    return text


def _shift_section(shift: dict) -> list[str]:
    """Per variation: how far it moves the jets, every predictor nominal -> shifted with
    errors, and the answer to the question with what limits it."""
    rows = [row for name, v in shift.items() for row in _shift_predictors(name, v)]
    sizes = [[name, _shift_size(v), _fmt(v["observables"]["max_distance"])]
             for name, v in shift.items()]  # fmt: skip
    return [
        "## Distribution shift",
        "Each variation is a sample made under other generator or detector settings. Size of "
        "the shift: KS distance, nominal against shifted, of each input feature (over the "
        "candidates present) and jet observable, with the effect size in nominal standard "
        "deviations; last column: largest significant KS distance between the float "
        "reference's and the firmware's selections on the shifted jets.",
        _table(["variation", "KS distance nominal vs shifted (effect size)",
                "selections KS distance"], sizes),
        "Per predictor, nominal -> shifted accuracy and mean one-vs-rest AUC with standard "
        "errors (binomial; Hanley-McNeil, the classes' mean error), and their changes in "
        "points with the errors of both samples added in quadrature.",
        _table(["variation", "predictor", "accuracy", "change [points]", "mean AUC",
                "change [points]"], rows),
        "The firmware's accuracy change minus the float reference's, with its standard error "
        "from the paired per-jet differences on each sample (negative: compression makes the "
        "tagger more fragile); a difference beyond 2 standard errors counts as real.",
        *[_shift_verdict(name, v) for name, v in shift.items()],
    ]  # fmt: skip


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _same_cost_model(hardware: dict) -> str:
    """Both models through da4ml's cost model: the like-for-like ratio."""
    c, f = (
        hardware[k]["tools"]["da4ml"] for k in ("compressed_estimate", "float_reference_estimate")
    )
    return (
        f" Like for like, da4ml's cost model (an estimate) for both: LUT {c['lut_estimate']:,.0f} "
        f"vs {f['lut_estimate']:,.0f} ({c['lut_estimate'] / f['lut_estimate']:.2f}x), register "
        f"bits {c['register_bits']:,} vs {f['register_bits']:,}, pipeline stages "
        f"{c['pipeline_stages']} vs {f['pipeline_stages']}."
    )


def _estimate_and_measurement(hardware: dict) -> list[str]:
    """The student's estimate beside its measurement, when a tool measured it."""
    ratio = hardware["measured_over_estimate"]
    if ratio is None:
        return [
            "The compressed figures are da4ml's estimate; `trigger emit-hls --rtl` measures the "
            "same design in Verilator and Yosys, `--synth` in Vivado/Vitis HLS."
        ]
    measured, estimate = hardware["compressed"], hardware["compressed_estimate"]
    return [
        f"The compressed design, estimated by da4ml's cost model and measured "
        f"({measured['source']}):",
        _table(["figure", "estimate", "measured", "measured / estimate"],
               [[k, estimate.get(k), measured.get(k), ratio.get(k)] for k in HARDWARE_KEYS]),
    ]  # fmt: skip


def _input_stage_sentence(h: dict) -> str:
    """Every figure covers the whole path; say so, and what the input stage alone costs."""
    stage = h["inputs"]
    measured = h["measured_over_estimate"] is not None and h["compressed"].get("input_stage")
    share = measured or h["compressed_estimate"].get("input_stage") or {}
    how = "Yosys's count" if measured else "da4ml's estimate"
    cost = (
        f" {how} of the input stage alone: {share['latency_cycles']} cycles, "
        f"{share['lut']:,} LUT, {share['ff']:,} FF."
        if share
        else ""
    )
    return (
        f" Firmware input: L1 words of {stage['constituents']} candidates (pT, eta, phi) and "
        f"of the jet (pT, eta, phi, candidate count); the input stage computing "
        f"({', '.join(stage['features'])}) from them runs inside the firmware, and every "
        f"figure above covers the whole path, words to logits.{cost}"
    )


def _needed(gate: dict) -> str:
    if gate["verdict"] != UNDECIDED:
        return "-" if gate["jets_needed"] is None else f"{gate['jets_needed']:,}"
    return "no estimate" if gate["jets_needed"] is None else f"**{gate['jets_needed']:,}**"


def _gates_section(g: dict, decision: dict) -> list[str]:
    rows = [[n, v["value"], v["uncertainty"], v["limit"],
             v["verdict"] if v["verdict"] == PASSED else f"**{v['verdict'].upper()}**",
             "-" if v["jets"] is None else f"{v['jets']:,}", _needed(v)]
            for n, v in g.items()]  # fmt: skip
    text = (
        f"A gate is undecided when the jets evaluated cannot tell its figure from its limit at "
        f"{decision['confidence']:.0%} confidence; `jets needed` is the number that would "
        "(from the statistic's distribution: the standard error of an accuracy difference, "
        "the critical KS distance of each selection, both falling as 1/sqrt(jets); for the "
        "shift gate, nominal jets with the shifted sample grown in proportion). An undecided "
        "gate is not passed: evaluate more jets (`trigger validate --data FILE`)."
    )
    if decision["undecided"] and decision["allow_undecided"]:
        text += " This report was allowed to end with undecided gates (`allow_undecided`)."
    return ["## Gates", _table(["gate", "value", "standard error", "limit", "verdict", "jets",
                                "jets needed"], rows), text]  # fmt: skip


def _baseline_sentence(c: dict, baseline: dict | None) -> str:
    if baseline is None or "baseline" not in c["predictors"]:
        return ""
    difference = baseline.get("firmware_minus_baseline")
    versus = (
        ""
        if difference is None
        else f" Firmware accuracy minus the baseline's on the same jets: "
        f"{_pm(difference['value'], difference['uncertainty'], 100)} points."
    )
    return (
        "Baseline: gradient-boosted trees (scikit-learn HistGradientBoostingClassifier) on the "
        "jet mass, soft-drop mass and candidate count, computed from the same candidates, "
        "trained on the run's training split: what a trigger reaches without a network." + versus
    )


def render_markdown(metrics: dict, plots: dict[str, str], title: str) -> str:
    c, o, h, g = (metrics[k] for k in ("classification", "observables", "hardware", "gates"))
    predictors = list(c["predictors"])
    decision = metrics["decision"]
    evaluation = metrics["evaluation"]
    engine = {"fast": "the fast emulator", "hls": "the hls4ml C++ emulator"}[c["firmware_engine"]]
    parts = [
        f"# Validation report: {title}",
        f"Gates: **{decision['verdict'].upper()}**. Evaluated: {evaluation['jets']:,} jets, "
        f"{evaluation['jets_from']} {evaluation['data']}. Predictors: baseline (no network), "
        "teacher (large float), float (the student's architecture, unquantised), student "
        "(quantized), firmware "
        f"({engine}, bit-exact with the HLS project, which emit-hls checked against the "
        f"{c['firmware_proven_against']} reference).",
        *_gates_section(g, decision),
        "## Classification",
        _table(["predictor", "accuracy", *[f"AUC {n}" for n in CLASS_NAMES]],
               [[p, c["predictors"][p]["accuracy"],
                 *[c["predictors"][p]["auc"][n] for n in CLASS_NAMES]] for p in predictors]),
        _baseline_sentence(c, metrics.get("baseline")),
        f"Firmware top class equals the float reference's on "
        f"{c['firmware_float_top_class_agreement']:.2%} of jets; equals the student's "
        f"on {c['firmware_student_top_class_agreement']:.2%}.",
        "Background (q+g) rejection 1/eps_B at fixed signal efficiency:",
        _table(["predictor", *[f"{s} @ {e}" for s in SIGNALS
                               for e in c["predictors"][predictors[0]]["rejection"][s]]],
               [[p, *[c["predictors"][p]["rejection"][s][e]["rejection"] for s in SIGNALS
                      for e in c["predictors"][p]["rejection"][s]]] for p in predictors]),
        f"![ROC curves]({plots['roc']})",
        "## Physics observables of selected jets",
        f"Jets each predictor selects as class k at {o['working_point_efficiency']:.0%} "
        f"efficiency for true-k jets (its own cut on p_k), float reference vs firmware; "
        f"statistic: {o['statistic']}. `*` marks a distance significant at "
        f"{o['confidence']:.0%} for its sample sizes; `sd` is the effect size, the shift of the "
        f"firmware selection's mean in standard deviations of the float reference's; `too few` "
        f"marks a selection too small for a distance of {o['judge_limit']:g} to be significant "
        f"({o['too_small_to_judge']} of {o['comparisons']}; every one resolves it from "
        f"{_fmt(o['jets_needed'])} evaluation jets). Largest significant distance (the gate's "
        f"figure): "
        f"{_fmt(o['max_distance'])} ({o['worst'] or 'none significant'}); largest of all: "
        f"{_fmt(o['max_distance_any'])}; largest effect size: {o['max_mean_shift']:.3f} sd.",
        _table(["class", "jets", *OBSERVABLE_LABELS],
               [[n, grp, *[_distance_cell(o["classes"][n][grp].get(obs))
                           for obs in OBSERVABLE_LABELS]]
                for n in o["classes"] for grp in ("signal", "background")]),
        *[f"![{t} selection]({plots['observables_' + t]})" for t in SIGNALS
          if "observables_" + t in plots],
        f"![efficiency vs pT and mass]({plots['efficiency']})",
        "## Hardware",
        _table(["figure", "compressed", "float reference", "ratio"],
               [[k, h["compressed"].get(k), h["float_reference"].get(k), h["ratio"].get(k)]
                for k in HARDWARE_KEYS]),
        f"Sources: compressed = {h['compressed']['source']}, float reference = "
        f"{h['float_reference']['source']}."
        + (" The two sources differ: read the ratio as indicative only."
           if h["compressed"]["source"] != h["float_reference"]["source"] else "")
        + "".join(f" Method of the {k.replace('_', ' ')} figures: {h[k]['method']}."
                  for k in ("compressed", "float_reference") if h[k].get("method"))
        + _same_cost_model(h)
        + _input_stage_sentence(h),
        *_estimate_and_measurement(h),
        f"![hardware]({plots['hardware']})",
        *_candidate_view_section(metrics.get("candidate_view"), plots),
        *(_shift_section(metrics["shift"]) if "shift" in metrics else []),
    ]  # fmt: skip
    return "\n\n".join(parts) + "\n"


def render_html(markdown_text: str, out_dir: Path, title: str) -> str:
    """Markdown -> HTML with every PNG inlined, so the file can be mailed on its own."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])

    def inline(match: re.Match) -> str:
        data = base64.b64encode((out_dir / match.group(1)).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}img{max-width:100%}"
    )
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>\n")  # fmt: skip
