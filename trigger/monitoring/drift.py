"""Label-free drift statistics: binned two-sample chi-square tests against a reference.

Each monitored quantity (an input feature at one candidate rank, a firmware score, a jet
observable) is histogrammed in bins fixed by the reference sample, at its quantiles, so that
every bin holds about the same share of reference jets and a new file of any size can be
counted chunk by chunk. Two histograms are compared with Pearson's chi-square test of
homogeneity (adjacent bins merged until each expects at least `MIN_EXPECTED` entries of the
smaller sample, where the chi-square law holds); under no drift its statistic follows a
chi-square law with bins - 1 degrees of freedom, whatever the quantity's shape.

The false-alarm rate is stated for the whole family of tests: each test flags at
`false_alarm / tests` (Bonferroni), so a file drawn from the reference's conditions raises any
flag with probability at most `false_alarm`, however the quantities correlate.

The size of a shift is Cohen's w, sqrt(sum (q - p)^2 / s) over the bins (p the reference's
shares, q the new sample's, s the pooled ones), with its noise floor, (bins - 1)(1/n + 1/m),
subtracted. A shift of size w moves the statistic by the noncentrality n m / (n + m) w^2, so
the new jets a test needs to flag it with a given power follow from the noncentral chi-square
law; with a reference of m jets, shifts with m w^2 below that noncentrality are never flagged.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.stats import chi2, ncx2

# Fewest expected entries of the smaller sample per bin: Pearson's statistic follows the
# chi-square law down to tail probabilities of 1e-5 (a Bonferroni threshold over a few hundred
# tests) only with well-filled bins.
MIN_EXPECTED = 10


def bin_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior edges at the reference's quantiles. The words are integers, so quantiles tie:
    tied edges collapse and a value that fills several quantiles gets one bin."""
    if len(reference) == 0:
        return np.zeros(0)
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of `values` in the bins [edge_i-1, edge_i) that `edges` bound (open at both ends)."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def merged(reference: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjacent bins merged, left to right, until each expects `MIN_EXPECTED` entries of the
    smaller sample under the pooled shares (chosen from the pooled counts alone, which the null
    hypothesis does not favour either way)."""
    pooled = reference + counts
    smaller = min(reference.sum(), counts.sum())
    total = pooled.sum()
    groups, start, running = [], 0, 0.0
    for i, entries in enumerate(pooled):
        running += entries
        if running * smaller / total >= MIN_EXPECTED:
            groups.append((start, i + 1))
            start, running = i + 1, 0.0
    if start < len(pooled):  # the remainder joins the last group
        groups[-1:] = [(groups[-1][0] if groups else 0, len(pooled))]
    index = [a for a, _ in groups]
    return np.add.reduceat(reference, index), np.add.reduceat(counts, index)


@dataclass(frozen=True)
class Comparison:
    """One quantity's reference histogram against the new one."""

    statistic: float
    dof: int  # 0: too few entries for a test (nothing is flagged)
    p_value: float
    effect: float  # Cohen's w above the noise floor
    reference_entries: int
    entries: int

    def flagged(self, threshold: float) -> bool:
        return self.dof > 0 and self.p_value < threshold


def compare(reference: np.ndarray, counts: np.ndarray) -> Comparison:
    """Pearson's chi-square test of homogeneity of two histograms over the same bins."""
    m, n = int(reference.sum()), int(counts.sum())
    if min(m, n) == 0 or max(m, n) * min(m, n) / (m + n) < MIN_EXPECTED:
        return Comparison(0.0, 0, 1.0, 0.0, m, n)
    ref, new = merged(reference.astype(np.float64), counts.astype(np.float64))
    dof = len(ref) - 1
    if dof < 1:
        return Comparison(0.0, 0, 1.0, 0.0, m, n)
    shares = (ref + new) / (m + n)
    statistic = float(((ref - m * shares) ** 2 / (m * shares)).sum())
    statistic += float(((new - n * shares) ** 2 / (n * shares)).sum())
    w2 = float(((new / n - ref / m) ** 2 / shares).sum()) - dof * (1 / n + 1 / m)
    return Comparison(statistic, dof, float(chi2.sf(statistic, dof)), np.sqrt(max(w2, 0.0)), m, n)


def entries_needed(
    effect: float, dof: int, reference_entries: int, threshold: float, power: float
) -> int | None:
    """New-sample entries at which a shift of Cohen's w `effect` is flagged with probability
    `power` at the per-test `threshold`; None when no sample is enough (no shift, or one the
    reference is too small to resolve)."""
    if effect <= 0 or dof < 1:
        return None
    effective = noncentrality_needed(dof, threshold, power) / effect**2  # n m / (n + m)
    if effective >= reference_entries:
        return None
    return int(np.ceil(effective * reference_entries / (reference_entries - effective)))


@functools.lru_cache(maxsize=256)
def noncentrality_needed(dof: int, threshold: float, power: float) -> float:
    """The noncentrality at which a chi-square test with `dof` degrees of freedom exceeds its
    `threshold` critical value with probability `power` (the same for many tests: cached)."""
    critical = chi2.isf(threshold, dof)
    return float(brentq(lambda lam: ncx2.sf(critical, dof, lam) - power, 1e-9, 1e7))


def threshold(false_alarm: float, tests: int) -> float:
    """Per-test p-value threshold giving a family-wise false-alarm rate of `false_alarm`."""
    return false_alarm / max(tests, 1)
