"""Does compression sculpt the physics? Observables of the jets each predictor selects.

At a common working point (each predictor's own cut on p_k giving the same efficiency for true
class-k jets), the jets a predictor selects as class k are compared with those the reference
selects, observable by observable, with the two-sample Kolmogorov-Smirnov distance. Jets
selected as class k split into signal (truly k) and background (the rest): background
sculpting, e.g. QCD jets pushed towards the W mass, is what a trigger group fears most.

Significance (at the validation's confidence, 99% by default) says whether a distance can be
told from noise at these sample sizes; the effect size says how large the change is whatever
the sizes: the shift of the selected jets' mean, in units of the reference selection's standard
deviation. A selection is too small to judge when even a distance at the gate's limit would not
be significant with its jets. The critical distance falls as 1/sqrt(jets), so the evaluation
jets a comparison needs to judge the limit are the jets evaluated times (critical / limit)^2:
the selections grow in proportion to the sample.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import ks_2samp

from trigger.config import CLASS_NAMES
from trigger.validation.metrics import softmax, threshold_for_efficiency

OBSERVABLE_LABELS = {
    "mass": "jet mass [GeV]",
    "mass_mmdt": "soft-drop mass [GeV]",
    "pt": "jet $p_T$ [GeV]",
    "eta": r"jet $\eta$",
    "multiplicity": "constituent multiplicity",
}
STATISTIC = "two-sample Kolmogorov-Smirnov distance (scipy.stats.ks_2samp)"
# Below this many jets per sample scipy can compute the exact p-value.
_EXACT_LIMIT = 10_000


def ks_coefficient(confidence: float) -> float:
    """c(alpha) of the asymptotic two-sample KS test, alpha = 1 - confidence: the limiting
    distribution gives P(D sqrt(nm/(n+m)) > c) = 2 exp(-2 c^2) (1.628 at 99%)."""
    return float(np.sqrt(-np.log((1 - confidence) / 2) / 2))


def critical_distance(n: int, m: int, confidence: float = 0.99) -> float:
    """KS distance that two samples of sizes n and m exceed by chance only with probability
    1 - `confidence`."""
    return ks_coefficient(confidence) * float(np.sqrt((n + m) / (n * m)))


def jets_to_judge(n: int, m: int, jets: int, limit: float, confidence: float) -> int | None:
    """Evaluation jets at which selections of n and m of `jets` jets (growing in proportion)
    make a distance of `limit` significant; None when a selection is empty (no estimate)."""
    if n == 0 or m == 0:
        return None
    scale = (critical_distance(n, m, confidence) / limit) ** 2
    return int(np.ceil(jets * scale))


def selected(logits: np.ndarray, labels: np.ndarray, target: int, efficiency: float) -> np.ndarray:
    """Jets whose p_target passes the cut keeping `efficiency` of true-target jets."""
    score = softmax(logits)[:, target]
    cut = threshold_for_efficiency(score[labels == target], efficiency)
    return score >= cut


def mean_shift(a: np.ndarray, b: np.ndarray) -> float | None:
    """(mean of b - mean of a) / standard deviation of a: an effect size in the reference's
    units (None when the reference does not spread)."""
    spread = float(np.std(a))
    return float((np.mean(b) - np.mean(a)) / spread) if spread > 0 else None


def ks_distance(
    a: np.ndarray, b: np.ndarray, judge_limit: float = 0.1, confidence: float = 0.99
) -> dict[str, float | int | bool | None]:
    """Distance, p-value, whether the distance is significant at `confidence` for these sizes,
    the mean shift (effect size), and whether the sizes can judge a distance of `judge_limit`."""
    sizes = {"n_reference": len(a), "n_test": len(b)}
    if len(a) < 2 or len(b) < 2:
        return {"distance": None, "p_value": None, "significant": False,
                "mean_shift": None, "judgeable": False, **sizes}  # fmt: skip
    critical = critical_distance(len(a), len(b), confidence)
    sizes.update(mean_shift=mean_shift(a, b), judgeable=critical <= judge_limit)
    if np.array_equal(np.sort(a), np.sort(b)):
        # Identical samples: exactly zero, without scipy's floating-point round-off.
        return {"distance": 0.0, "p_value": 1.0, "significant": False, **sizes}
    method = "exact" if len(a) * len(b) <= _EXACT_LIMIT else "asymp"
    with warnings.catch_warnings():
        # scipy falls back to the asymptotic p-value where the exact one does not converge, and
        # says so on stderr; the distance, which the gate uses, is the same either way.
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
        result = ks_2samp(a, b, method=method)
    distance = float(result.statistic)
    return {
        "distance": distance,
        "p_value": float(result.pvalue),
        "significant": distance > critical,
        **sizes,
    }


def compare_selections(
    reference_logits: np.ndarray,
    test_logits: np.ndarray,
    labels: np.ndarray,
    observables: dict[str, np.ndarray],
    efficiency: float,
    judge_limit: float = 0.1,
    confidence: float = 0.99,
) -> dict:
    """KS distance per (class, signal|background, observable) between the two selections.

    `max_distance` (what the gate reads) is the largest distance that is also significant at
    `confidence` for its sample sizes: a handful of selected jets cannot fail the gate on noise
    alone. `max_distance_any` is the largest regardless; `max_mean_shift` the largest effect
    size; `too_small_to_judge` counts the comparisons whose sizes cannot resolve `judge_limit`;
    `jets_needed` is how many evaluation jets every comparison needs to resolve it (None when
    a selection is empty and gives no estimate).
    """
    classes = {}
    worst = (0.0, None)
    largest = shift = 0.0
    too_small = 0
    needed: list[int | None] = []
    for target, name in enumerate(CLASS_NAMES):
        if not np.any(labels == target):
            continue
        ref = selected(reference_logits, labels, target, efficiency)
        test = selected(test_logits, labels, target, efficiency)
        groups = {"signal": labels == target, "background": labels != target}
        classes[name] = {}
        for group, members in groups.items():
            rows = {}
            for obs, values in observables.items():
                row = ks_distance(
                    values[ref & members], values[test & members], judge_limit, confidence
                )
                row["jets_needed"] = jets_to_judge(
                    row["n_reference"], row["n_test"], len(labels), judge_limit, confidence
                )
                needed.append(row["jets_needed"])
                rows[obs] = row
                distance = row["distance"] or 0.0
                largest = max(largest, distance)
                shift = max(shift, abs(row["mean_shift"] or 0.0))
                too_small += not row["judgeable"]
                if row["significant"] and distance > worst[0]:
                    worst = (distance, f"{name}/{group}/{obs}")
            classes[name][group] = rows
    return {
        "working_point_efficiency": efficiency,
        "statistic": STATISTIC,
        "classes": classes,
        "max_distance": worst[0],
        "worst": worst[1],
        "max_distance_any": largest,
        "max_mean_shift": shift,
        "judge_limit": judge_limit,
        "confidence": confidence,
        "too_small_to_judge": too_small,
        "jets": len(labels),
        "jets_needed": None if None in needed else max(needed, default=0),
        "comparisons": sum(len(rows) for groups in classes.values() for rows in groups.values()),
    }


def efficiency_curve(
    values: np.ndarray, passed: np.ndarray, edges: np.ndarray
) -> dict[str, list[float | None]]:
    """Fraction of jets passing per bin of an observable (None for empty bins)."""
    index = np.digitize(values, edges) - 1
    efficiency = []
    for b in range(len(edges) - 1):
        in_bin = index == b
        efficiency.append(float(passed[in_bin].mean()) if in_bin.any() else None)
    return {"edges": [float(e) for e in edges], "efficiency": efficiency}


def sculpting_curves(
    predictions: dict[str, np.ndarray],
    labels: np.ndarray,
    observables: dict[str, np.ndarray],
    efficiency: float,
    targets: tuple[str, ...] = ("W", "Z", "t"),
    bins: int = 12,
) -> dict:
    """Signal and background efficiency versus jet pT and mass, per predictor and target."""
    curves: dict = {}
    for obs in ("pt", "mass"):
        if obs not in observables:
            continue
        values = observables[obs]
        edges = np.quantile(values, np.linspace(0, 1, bins + 1))
        edges[-1] = np.nextafter(edges[-1], np.inf)
        for target in targets:
            t = CLASS_NAMES.index(target)
            for predictor, logits in predictions.items():
                passed = selected(logits, labels, t, efficiency)
                for group, members in (("signal", labels == t), ("background", labels != t)):
                    curve = efficiency_curve(values[members], passed[members], edges)
                    curves.setdefault(obs, {}).setdefault(target, {}).setdefault(predictor, {})[
                        group
                    ] = curve
    return curves
