"""Does compression make the tagger more fragile when conditions move?

A shifted sample is made with other generator or detector settings (`trigger data generate
--variation NAME`). On it, every predictor's accuracy and mean one-vs-rest AUC are compared
with the nominal sample's, each with its standard error (binomial for the accuracy, Hanley and
McNeil for an AUC); the two samples are independent, so the error of a change adds theirs in
quadrature. The question a trigger group asks is answered: does the firmware lose more under
the shift than the float model it compresses? That is the firmware's accuracy change minus the
float reference's, with its statistical uncertainty: on one sample both predictors see the
same jets, so the variance of their accuracy difference is that of the per-jet difference in
correctness, and each sample's share of the total variance says which one limits the verdict.
How far the shifted sample is from nominal is measured directly: the KS distance and effect
size of every input feature (over the candidates present) and jet observable. The observable
distances of the firmware's selections against the float reference's, on the shifted jets, say
whether compression sculpts differently there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trigger.validation.metrics import (
    accuracy,
    accuracy_uncertainty,
    mean_auc,
    paired_accuracy_difference,
)
from trigger.validation.observables import compare_selections, ks_distance

# A difference beyond this many standard errors is reported as a real one.
SIGNIFICANT_SIGMA = 2.0
# The nominal sample limits the verdict when it holds more than this share of the variance.
LIMITING_SHARE = 0.5


@dataclass
class Evaluated:
    """One sample as validation sees it: every predictor's logits on its jets, their labels,
    jet observables and input features (each feature's values over the candidates present)."""

    outputs: dict[str, np.ndarray]
    labels: np.ndarray
    observables: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray] = field(default_factory=dict)


def _quadrature(*errors: float | None) -> float | None:
    return None if None in errors else float(np.sqrt(sum(e**2 for e in errors)))


def _difference(after: float | None, before: float | None) -> float | None:
    return None if None in (after, before) else after - before


def predictor_change(
    nominal: np.ndarray, nominal_labels: np.ndarray, shifted: np.ndarray, shifted_labels: np.ndarray
) -> dict:
    """One predictor nominal vs shifted: accuracy and mean AUC, each with its standard error."""
    before, after = accuracy(nominal, nominal_labels), accuracy(shifted, shifted_labels)
    before_error = accuracy_uncertainty(nominal, nominal_labels)
    after_error = accuracy_uncertainty(shifted, shifted_labels)
    auc_before, auc_before_error = mean_auc(nominal, nominal_labels)
    auc_after, auc_after_error = mean_auc(shifted, shifted_labels)
    return {
        "accuracy_nominal": before,
        "accuracy_nominal_uncertainty": before_error,
        "accuracy_shifted": after,
        "accuracy_shifted_uncertainty": after_error,
        "accuracy_change": after - before,
        "accuracy_change_uncertainty": _quadrature(before_error, after_error),
        "mean_auc_nominal": auc_before,
        "mean_auc_nominal_uncertainty": auc_before_error,
        "mean_auc_shifted": auc_after,
        "mean_auc_shifted_uncertainty": auc_after_error,
        "mean_auc_change": _difference(auc_after, auc_before),
        "mean_auc_change_uncertainty": _quadrature(auc_before_error, auc_after_error),
    }


def _distances(nominal: dict[str, np.ndarray], shifted: dict[str, np.ndarray]) -> dict:
    rows = {}
    for name in nominal.keys() & shifted.keys():
        row = ks_distance(nominal[name], shifted[name])
        rows[name] = {k: row[k] for k in ("distance", "mean_shift", "significant")}
    return dict(sorted(rows.items()))


def shift_size(nominal: Evaluated, shifted: Evaluated) -> dict:
    """KS distance and effect size of each input feature and jet observable, nominal vs
    shifted, and the largest distance of each kind."""
    size = {
        "inputs": _distances(nominal.inputs, shifted.inputs),
        "observables": _distances(nominal.observables, shifted.observables),
    }
    for kind in ("inputs", "observables"):
        distances = [r["distance"] for r in size[kind].values() if r["distance"] is not None]
        size[f"max_{kind}_distance"] = max(distances, default=None)
    return size


def shift_summary(
    nominal: Evaluated,
    shifted: Evaluated,
    efficiency: float,
    judge_limit: float,
    confidence: float = 0.99,
) -> dict:
    """Each predictor nominal vs shifted, the firmware's extra change beyond float's, and the
    size of the shift.

    `degradation` = -(firmware change - float change): positive when the firmware loses more
    accuracy under the shift than the float reference. `variance_share` says how much of the
    squared uncertainty each sample contributes; `nominal_limits` is set when the nominal
    sample contributes most of it (a larger nominal sample would sharpen the verdict most).
    """
    predictors = {
        name: predictor_change(nominal.outputs[name], nominal.labels, logits, shifted.labels)
        for name, logits in shifted.outputs.items()
    }
    after, after_variance = paired_accuracy_difference(
        shifted.outputs["firmware"], shifted.outputs["float"], shifted.labels
    )
    before, before_variance = paired_accuracy_difference(
        nominal.outputs["firmware"], nominal.outputs["float"], nominal.labels
    )
    difference = after - before
    variance = after_variance + before_variance
    uncertainty = float(np.sqrt(variance))
    share = before_variance / variance if variance > 0 else 0.0
    selections = compare_selections(
        shifted.outputs["float"],
        shifted.outputs["firmware"],
        shifted.labels,
        shifted.observables,
        efficiency,
        judge_limit,
        confidence,
    )
    return {
        "jets": len(shifted.labels),
        "nominal_jets": len(nominal.labels),
        "predictors": predictors,
        "firmware_minus_float_accuracy_change": difference,
        "uncertainty": uncertainty,
        "variance_share": {"nominal": share, "shifted": 1.0 - share if variance > 0 else 0.0},
        "nominal_limits": share > LIMITING_SHARE,
        "degradation": -difference,
        "significant": abs(difference) > SIGNIFICANT_SIGMA * uncertainty,
        "size": shift_size(nominal, shifted),
        "observables": {
            key: selections[key]
            for key in ("max_distance", "worst", "max_distance_any", "max_mean_shift")
        },
    }
