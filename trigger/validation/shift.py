"""Does compression make the tagger more fragile when conditions move?

A shifted sample is made with other generator or detector settings (`trigger data generate
--variation NAME`). On it, every predictor's accuracy and mean one-vs-rest AUC are compared
with the nominal test split's, and the question a trigger group asks is answered: does the
firmware lose more under the shift than the float model it compresses? That is the firmware's
accuracy change minus the float reference's, with its statistical uncertainty: on one sample
both predictors see the same jets, so the variance of their accuracy difference is that of the
per-jet difference in correctness; the nominal and the shifted samples are independent. The
observable distances of the firmware's selections against the float reference's, on the
shifted jets, say whether compression sculpts differently there.
"""

from __future__ import annotations

import numpy as np

from trigger.validation.metrics import accuracy, one_vs_rest_auc
from trigger.validation.observables import compare_selections

# A difference beyond this many standard errors is reported as a real one.
SIGNIFICANT_SIGMA = 2.0


def _paired_accuracy_difference(
    outputs: dict[str, np.ndarray], labels: np.ndarray
) -> tuple[float, float]:
    """Firmware minus float accuracy on one sample, and the variance of that mean."""
    difference = (outputs["firmware"].argmax(axis=1) == labels).astype(np.float64) - (
        outputs["float"].argmax(axis=1) == labels
    )
    return float(difference.mean()), float(difference.var(ddof=1) / len(difference))


def _mean_auc(logits: np.ndarray, labels: np.ndarray) -> float | None:
    values = [v for v in one_vs_rest_auc(logits, labels).values() if v is not None]
    return float(np.mean(values)) if values else None


def shift_summary(
    nominal: tuple[dict[str, np.ndarray], np.ndarray],
    shifted: tuple[dict[str, np.ndarray], np.ndarray],
    observables: dict[str, np.ndarray],
    efficiency: float,
    judge_limit: float,
) -> dict:
    """Each predictor nominal vs shifted, and the firmware's extra change beyond float's.

    `nominal` and `shifted` are (outputs by predictor, labels); `observables` those of the
    shifted jets. `degradation` = -(firmware change - float change): positive when the
    firmware loses more accuracy under the shift than the float reference.
    """
    (nominal_outputs, nominal_labels), (shifted_outputs, shifted_labels) = nominal, shifted
    predictors = {}
    for name, logits in shifted_outputs.items():
        before, after = (
            accuracy(nominal_outputs[name], nominal_labels),
            accuracy(logits, shifted_labels),
        )
        auc_before = _mean_auc(nominal_outputs[name], nominal_labels)
        auc_after = _mean_auc(logits, shifted_labels)
        predictors[name] = {
            "accuracy_nominal": before,
            "accuracy_shifted": after,
            "accuracy_change": after - before,
            "mean_auc_nominal": auc_before,
            "mean_auc_shifted": auc_after,
            "mean_auc_change": None if None in (auc_before, auc_after) else auc_after - auc_before,
        }
    after, after_variance = _paired_accuracy_difference(shifted_outputs, shifted_labels)
    before, before_variance = _paired_accuracy_difference(nominal_outputs, nominal_labels)
    difference = after - before
    uncertainty = float(np.sqrt(after_variance + before_variance))
    selections = compare_selections(
        shifted_outputs["float"],
        shifted_outputs["firmware"],
        shifted_labels,
        observables,
        efficiency,
        judge_limit,
    )
    return {
        "jets": len(shifted_labels),
        "predictors": predictors,
        "firmware_minus_float_accuracy_change": difference,
        "uncertainty": uncertainty,
        "degradation": -difference,
        "significant": abs(difference) > SIGNIFICANT_SIGMA * uncertainty,
        "observables": {
            key: selections[key]
            for key in ("max_distance", "worst", "max_distance_any", "max_mean_shift")
        },
    }
