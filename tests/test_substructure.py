"""Substructure observables of the data's ceiling classifier, against hand-computed jets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from trigger.inputs import ANGLE_LSB
from trigger.validation import substructure


def _jets(*candidates: list[tuple[int, int, int]], slots: int = 6) -> np.ndarray:
    words = np.zeros((len(candidates), slots, 3), np.int64)
    for i, jet in enumerate(candidates):
        words[i, : len(jet)] = jet
    return words


def test_two_balanced_prongs_give_tau1_their_half_distance_and_tau2_zero() -> None:
    d = 40  # eta words either side of the axis
    observed = substructure.observables(_jets([(400, d, 0), (400, -d, 0)]))
    assert observed["tau1"][0] == pytest.approx(d * ANGLE_LSB / substructure.R0, rel=1e-9)
    assert observed["tau2"][0] == 0.0  # as many axes as candidates
    assert observed["e3"][0] == 0.0  # no three distinct candidates
    assert observed["e2"][0] == pytest.approx(0.25 * 2 * d * ANGLE_LSB, rel=1e-9)


def test_energy_correlations_equal_their_sums_over_pairs_and_triples() -> None:
    jet = [(400, 10, 20), (200, -30, 5), (100, 0, -40), (60, 25, 25)]
    observed = substructure.observables(_jets(jet))
    pt, eta, phi = substructure.from_words(_jets(jet))
    z = pt[0, : len(jet)] / pt[0].sum()

    def r(i: int, j: int) -> float:
        return float(np.hypot(eta[0, i] - eta[0, j], phi[0, i] - phi[0, j]))

    e2 = sum(z[i] * z[j] * r(i, j) for i, j in itertools.combinations(range(len(jet)), 2))
    e3 = sum(
        z[i] * z[j] * z[k] * r(i, j) * r(i, k) * r(j, k)
        for i, j, k in itertools.combinations(range(len(jet)), 3)
    )
    assert observed["e2"][0] == pytest.approx(e2, rel=1e-12)
    assert observed["e3"][0] == pytest.approx(e3, rel=1e-12)
    assert observed["c2"][0] == pytest.approx(e3 / e2**2, rel=1e-12)
    assert observed["d2"][0] == pytest.approx(e3 / e2**3, rel=1e-12)


def test_three_prongs_have_small_tau32_only_when_the_jet_has_three_hard_prongs() -> None:
    prongs = [(400, 60, 0), (400, -30, 52), (400, -30, -52)]
    halo = [(8, 62, 2), (8, -28, 50), (8, -32, -54)]
    one_prong = [(1200, 0, 0), (8, 62, 2), (8, -28, 50), (8, -32, -54)]
    observed = substructure.observables(_jets(prongs + halo, one_prong))
    assert observed["tau32"][0] < 0.2 < observed["tau32"][1]
    assert observed["tau21"][1] < 1.0


def test_a_jet_wraps_around_phi_like_any_other() -> None:
    near_pi = _jets([(400, 10, 715), (300, -10, -715), (100, 0, 700)])
    near_zero = _jets([(400, 10, -5), (300, -10, 5), (100, 0, -20)])  # shifted by pi
    wrapped, plain = substructure.observables(near_pi), substructure.observables(near_zero)
    for name in substructure.NAMES:
        assert wrapped[name][0] == pytest.approx(plain[name][0], rel=1e-9, abs=1e-12), name
