"""The drift monitor's statistics on synthetic shifts of known size: a shift is found at the
jets the monitor says it needs, no shift is flagged at no more than the stated rate.

The stage itself (its report, exit code and refusals) is tested on a trained tiny run in
tests/test_outputs.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from trigger.errors import TriggerError
from trigger.monitoring import drift
from trigger.monitoring.stage import MonitorSettings, halving_false_alarms, quantities

REPETITIONS = 400


def _binomial_ceiling(rate: float, trials: int) -> float:
    """The stated rate plus three binomial standard errors."""
    return rate + 3 * np.sqrt(rate * (1 - rate) / trials)


def _p_values(rng, reference_jets: int, jets: int, shift: float = 0.0, integer: bool = False):
    p = []
    for _ in range(REPETITIONS):
        reference = rng.normal(size=reference_jets)
        new = rng.normal(shift, size=jets)
        if integer:  # words: many ties
            reference, new = np.round(4 * reference), np.round(4 * new)
        edges = drift.bin_edges(reference, 20)
        result = drift.compare(drift.histogram(reference, edges), drift.histogram(new, edges))
        p.append(result.p_value)
    return np.asarray(p)


@pytest.mark.parametrize("integer", [False, True], ids=["continuous", "tied-words"])
@pytest.mark.parametrize("sizes", [(20_000, 1_000), (2_000, 2_000), (1_000, 20_000)])
def test_without_a_shift_the_false_alarm_rate_is_the_stated_one(sizes, integer) -> None:
    p = _p_values(np.random.default_rng(sum(sizes) + integer), *sizes, integer=integer)
    for rate in (0.01, 0.05):
        assert (p < rate).mean() <= _binomial_ceiling(rate, REPETITIONS), rate


def test_a_shift_is_found_at_the_jets_the_monitor_says_it_needs() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(size=20_000)
    edges = drift.bin_edges(reference, 20)
    counts = drift.histogram(reference, edges)
    shift, threshold, power = 0.15, 1e-3, 0.9
    # The size of the shift, from one large sample, and the jets it needs.
    measured = drift.compare(counts, drift.histogram(rng.normal(shift, size=50_000), edges))
    needed = drift.entries_needed(measured.effect, measured.dof, 20_000, threshold, power)
    assert needed is not None and 500 < needed < 20_000
    found = [
        drift.compare(counts, drift.histogram(rng.normal(shift, size=needed), edges)).flagged(
            threshold
        )
        for _ in range(200)
    ]
    assert 0.8 <= np.mean(found) <= 0.98
    # A quarter of those jets sees it far less often.
    fewer = [
        drift.compare(counts, drift.histogram(rng.normal(shift, size=needed // 4), edges))
        .flagged(threshold)
        for _ in range(200)
    ]  # fmt: skip
    assert np.mean(fewer) < 0.5


def test_no_shift_has_no_size_and_needs_no_jets() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=20_000)
    edges = drift.bin_edges(reference, 20)
    result = drift.compare(drift.histogram(reference, edges), drift.histogram(reference, edges))
    assert result.effect == 0 and not result.flagged(0.05)
    assert drift.entries_needed(result.effect, result.dof, 20_000, 1e-3, 0.9) is None


def test_a_shift_the_reference_cannot_resolve_is_never_flagged() -> None:
    """With m reference entries the statistic's shift saturates at m w^2: below what the
    threshold needs, no new sample is enough."""
    assert drift.entries_needed(0.01, 19, 1_000, 1e-4, 0.9) is None
    assert drift.entries_needed(0.01, 19, 10_000_000, 1e-4, 0.9) is not None


def test_merged_bins_keep_every_entry_and_expect_enough_of_the_smaller_sample() -> None:
    rng = np.random.default_rng(5)
    reference = rng.integers(0, 30, 5_000)
    new = rng.integers(0, 30, 300)
    edges = drift.bin_edges(reference, 50)
    ref, counts = drift.merged(drift.histogram(reference, edges), drift.histogram(new, edges))
    assert ref.sum() == 5_000 and counts.sum() == 300
    expected = (ref + counts) * 300 / 5_300
    assert (expected >= drift.MIN_EXPECTED).all()


def test_too_few_entries_are_not_tested() -> None:
    result = drift.compare(np.array([3, 2]), np.array([1, 4]))
    assert result.dof == 0 and not result.flagged(1.0)


def test_the_family_flags_a_nominal_sample_no_more_often_than_stated() -> None:
    """Halvings of a reference are two nominal samples: over many quantities (inputs at
    every rank, scores, observables) the whole family flags at most `false_alarm` of them."""
    from trigger.inputs import fit_input_stage, random_words

    n = 8
    words = random_words(4_000, n, np.random.default_rng(6))
    candidates, jet = words[:, : 3 * n].reshape(-1, n, 3), words[:, 3 * n :]
    stage = fit_input_stage(candidates, jet, ("pt", "deta", "dphi", "count"), 12, 3)
    logits = np.random.default_rng(7).normal(size=(len(jet), 5))
    values = quantities(stage, words, logits, {"mass": jet[:, 0].astype(float)})
    edges = {n: drift.bin_edges(v, 20) for n, (_, v, _) in values.items()}
    edges = {n: e for n, e in edges.items() if len(e)}
    assert len(edges) > 20  # the family is large
    threshold = drift.threshold(0.05, len(edges))
    alarms = halving_false_alarms(values, len(words), edges, threshold, 100)
    assert alarms <= 100 * _binomial_ceiling(0.05, 100)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"false_alarm": 0.0}, "--false-alarm"),
        ({"false_alarm": 1.0}, "--false-alarm"),
        ({"power": 1.5}, "--power"),
        ({"effect": 0.0}, "--effect"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message) -> None:
    with pytest.raises(TriggerError, match=message):
        MonitorSettings(**settings)
