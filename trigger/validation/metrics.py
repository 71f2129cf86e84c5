"""Classification metrics on predictor outputs (logits), against one-hot truth.

Pure numpy/scikit-learn: validation knows nothing about how the predictions were made.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from trigger.config import CLASS_NAMES

SIGNALS = ("W", "Z", "t")
BACKGROUNDS = ("q", "g")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def one_vs_rest_auc(logits: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """AUC of p_c for class c against all others; None for a class absent from `labels`."""
    probs = softmax(logits)
    return {
        name: float(roc_auc_score(labels == c, probs[:, c]))
        if 0 < np.sum(labels == c) < len(labels)
        else None
        for c, name in enumerate(CLASS_NAMES)
    }


def accuracy_uncertainty(logits: np.ndarray, labels: np.ndarray) -> float:
    """Binomial standard error of the accuracy: sqrt(p (1 - p) / n)."""
    p = accuracy(logits, labels)
    return float(np.sqrt(p * (1 - p) / len(labels)))


def auc_uncertainty(auc: float, n_signal: int, n_background: int) -> float:
    """Standard error of an AUC (Hanley and McNeil, Radiology 143 (1982) 29, eq. 2)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (
        auc * (1 - auc) + (n_signal - 1) * (q1 - auc**2) + (n_background - 1) * (q2 - auc**2)
    ) / (n_signal * n_background)
    return float(np.sqrt(max(variance, 0.0)))


def mean_auc(logits: np.ndarray, labels: np.ndarray) -> tuple[float | None, float | None]:
    """Mean one-vs-rest AUC over the classes present, and its standard error.

    The classes' AUCs come from the same jets and move together; the error taken is the mean
    of theirs, exact when they are fully correlated and an upper bound otherwise.
    """
    aucs = one_vs_rest_auc(logits, labels)
    present = {c: v for c, v in aucs.items() if v is not None}
    if not present:
        return None, None
    errors = [
        auc_uncertainty(v, int(np.sum(labels == CLASS_NAMES.index(c))),
                        int(np.sum(labels != CLASS_NAMES.index(c))))
        for c, v in present.items()
    ]  # fmt: skip
    return float(np.mean(list(present.values()))), float(np.mean(errors))


def paired_accuracy_difference(
    test: np.ndarray, reference: np.ndarray, labels: np.ndarray
) -> tuple[float, float]:
    """Accuracy of `test` minus that of `reference` on the same jets, and the variance of that
    mean: the per-jet difference in correctness (-1, 0 or 1) has it, the pairing removes the
    jets both get right or wrong."""
    difference = (test.argmax(axis=1) == labels).astype(np.float64) - (
        reference.argmax(axis=1) == labels
    )
    if len(difference) < 2:
        return float(difference.mean()), float("inf")
    return float(difference.mean()), float(difference.var(ddof=1) / len(difference))


def one_vs_rest_roc(logits: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
    """(false-positive rate, true-positive rate) per class, for plotting."""
    probs = softmax(logits)
    curves = {}
    for c, name in enumerate(CLASS_NAMES):
        fpr, tpr, _ = roc_curve(labels == c, probs[:, c])
        curves[name] = (fpr, tpr)
    return curves


def discriminant(logits: np.ndarray, signal: str) -> np.ndarray:
    """p_s / (p_s + p_q + p_g): the usual signal-vs-QCD tagging score."""
    probs = softmax(logits)
    s = probs[:, CLASS_NAMES.index(signal)]
    b = sum(probs[:, CLASS_NAMES.index(name)] for name in BACKGROUNDS)
    return s / np.maximum(s + b, 1e-300)


def threshold_for_efficiency(scores: np.ndarray, efficiency: float) -> float:
    """Lowest cut `score >= cut` that keeps at least `efficiency` of `scores`.

    Quantised outputs tie often: the achieved efficiency can exceed the target, never fall
    below it; callers report the achieved value.
    """
    if len(scores) == 0:
        msg = "no signal jets to set a working point on"
        raise ValueError(msg)
    ordered = np.sort(scores)[::-1]
    index = max(int(np.ceil(efficiency * len(ordered))) - 1, 0)
    return float(ordered[index])


def background_rejection(
    logits: np.ndarray, labels: np.ndarray, signal: str, efficiencies: Sequence[float]
) -> dict[str, dict[str, float | None]]:
    """1/eps_B of q+g at fixed signal efficiency; None when no background jet passes."""
    score = discriminant(logits, signal)
    is_signal = labels == CLASS_NAMES.index(signal)
    is_background = np.isin(labels, [CLASS_NAMES.index(b) for b in BACKGROUNDS])
    result = {}
    for efficiency in efficiencies:
        cut = threshold_for_efficiency(score[is_signal], efficiency)
        eps_s = float(np.mean(score[is_signal] >= cut))
        eps_b = float(np.mean(score[is_background] >= cut)) if is_background.any() else 0.0
        result[f"{efficiency:g}"] = {
            "signal_efficiency": eps_s,
            "background_efficiency": eps_b,
            "rejection": 1.0 / eps_b if eps_b > 0 else None,
        }
    return result


def top_class_agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))


def classification_summary(
    logits: np.ndarray, labels: np.ndarray, efficiencies: Sequence[float]
) -> dict:
    return {
        "accuracy": accuracy(logits, labels),
        "auc": one_vs_rest_auc(logits, labels),
        "rejection": {s: background_rejection(logits, labels, s, efficiencies) for s in SIGNALS},
    }
