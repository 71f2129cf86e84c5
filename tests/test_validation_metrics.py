"""Validation metrics against hand-computed values on small fixed examples."""

from __future__ import annotations

import numpy as np
import pytest

from trigger.config import GatesConfig
from trigger.validation.gates import evaluate_gates, failed
from trigger.validation.metrics import (
    accuracy,
    background_rejection,
    discriminant,
    one_vs_rest_auc,
    threshold_for_efficiency,
    top_class_agreement,
)
from trigger.validation.observables import (
    compare_selections,
    critical_distance,
    efficiency_curve,
    ks_distance,
)

G, Q, W, Z, T = range(5)


def logits_from(probabilities: list[list[float]]) -> np.ndarray:
    """Logits whose softmax is exactly the given rows (up to rounding)."""
    return np.log(np.asarray(probabilities, dtype=np.float64))


def test_accuracy_and_top_class_agreement() -> None:
    logits = logits_from([[0.6, 0.1, 0.1, 0.1, 0.1], [0.1, 0.6, 0.1, 0.1, 0.1],
                          [0.1, 0.1, 0.1, 0.6, 0.1], [0.1, 0.1, 0.1, 0.1, 0.6]])  # fmt: skip
    labels = np.array([G, Q, W, T])
    assert accuracy(logits, labels) == 0.75  # the W jet is called Z
    other = logits[[0, 1, 2, 0]]
    assert top_class_agreement(logits, other) == 0.75


def test_one_vs_rest_auc_counts_correctly_ordered_pairs() -> None:
    # p_W of the W jets: 0.5, 0.3; of the gluons: 0.4, 0.1, 0.2. Pairs ordered right:
    # 0.5 beats all three, 0.3 beats 0.1 and 0.2: 5 of 6.
    eps = 1e-6
    rows = [[eps, eps, p, 1 - p - 3 * eps, eps] for p in (0.5, 0.3, 0.4, 0.1, 0.2)]
    labels = np.array([W, W, G, G, G])
    auc = one_vs_rest_auc(logits_from(rows), labels)
    assert auc["W"] == pytest.approx(5 / 6)


def test_threshold_keeps_at_least_the_target_efficiency_with_ties() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.8, 0.1])
    assert threshold_for_efficiency(scores, 0.4) == 0.8  # 2 of 5 needed; ties keep 4 of 5
    assert threshold_for_efficiency(scores, 0.2) == 0.9
    assert threshold_for_efficiency(scores, 1.0) == 0.1


def test_background_rejection_at_fixed_signal_efficiency() -> None:
    # W-vs-QCD discriminant p_W / (p_W + p_q + p_g); Z and t jets are not background.
    rows = [[0.1, 0.1, 0.8, 0.0, 0.0],  # W: disc 0.8
            [0.3, 0.3, 0.4, 0.0, 0.0],  # W: disc 0.4
            [0.5, 0.0, 0.5, 0.0, 0.0],  # g: disc 0.5
            [0.0, 0.8, 0.2, 0.0, 0.0],  # q: disc 0.2
            [0.0, 0.9, 0.1, 0.0, 0.0],  # q: disc 0.1
            [0.0, 0.0, 0.9, 0.1, 0.0],  # Z: disc 1.0, ignored as background
            ]  # fmt: skip
    rows = [[max(p, 1e-12) for p in r] for r in rows]
    labels = np.array([W, W, G, Q, Q, Z])
    logits = logits_from(rows)
    np.testing.assert_allclose(discriminant(logits, "W")[:5], [0.8, 0.4, 0.5, 0.2, 0.1], atol=1e-9)
    result = background_rejection(logits, labels, "W", [0.5, 1.0])
    # 50%: cut at 0.8 -> no background passes -> rejection undefined (None).
    assert result["0.5"] == {"signal_efficiency": 0.5, "background_efficiency": 0.0,
                             "rejection": None}  # fmt: skip
    # 100%: cut at 0.4 -> the gluon (0.5) passes: eps_B = 1/3, rejection 3.
    assert result["1"]["background_efficiency"] == pytest.approx(1 / 3)
    assert result["1"]["rejection"] == pytest.approx(3.0)


def test_ks_distance_hand_example_and_identity() -> None:
    assert ks_distance(np.array([1.0, 2, 3, 4]), np.array([3.0, 4, 5, 6]))["distance"] == 0.5
    same = np.array([5.0, 1, 3])
    assert ks_distance(same, same[::-1]) == {"distance": 0.0, "p_value": 1.0,
                                             "significant": False, "n_reference": 3,
                                             "n_test": 3, "mean_shift": 0.0,
                                             "judgeable": False}  # fmt: skip
    assert ks_distance(np.array([1.0]), same)["distance"] is None


def test_ks_significance_depends_on_sample_size() -> None:
    # A 0.1 shift of a uniform distribution is noise for 50 jets but significant for 5,000.
    rng = np.random.default_rng(0)
    assert critical_distance(50, 50) == pytest.approx(1.628 * np.sqrt(2 / 50), rel=1e-3)
    small = ks_distance(rng.uniform(0, 1, 50), rng.uniform(0.1, 1.1, 50))
    large = ks_distance(rng.uniform(0, 1, 5000), rng.uniform(0.1, 1.1, 5000))
    assert not small["significant"]
    assert large["significant"] and large["distance"] == pytest.approx(0.1, abs=0.03)


def test_efficiency_curve_per_bin() -> None:
    values = np.array([0.5, 1.5, 1.6, 2.5, 2.6, 2.7])
    passed = np.array([True, False, True, True, True, False])
    curve = efficiency_curve(values, passed, np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    assert curve["efficiency"] == [1.0, 0.5, pytest.approx(2 / 3), None]


def _toy_classifier(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    mass = np.where(labels == W, rng.normal(80, 8, n), rng.uniform(0, 250, n))
    observables = {"mass": mass, "pt": rng.uniform(800, 1200, n)}
    probs = np.full((n, 5), 0.1) + rng.uniform(0, 0.3, (n, 5))
    probs[np.arange(n), labels] += 0.15  # a mediocre tagger, blind to mass within a class
    return labels, observables, np.log(probs / probs.sum(axis=1, keepdims=True))


def test_float_reference_against_itself_is_not_flagged() -> None:
    labels, observables, logits = _toy_classifier(4000)
    result = compare_selections(logits, logits.copy(), labels, observables, 0.5)
    assert result["max_distance"] == 0.0


def test_a_mass_sculpting_predictor_is_flagged() -> None:
    labels, observables, logits = _toy_classifier(4000)
    near_w = np.abs(observables["mass"] - 80) < 15
    noise = np.random.default_rng(1).normal(0, 0.1, len(labels))
    sculpting = np.zeros_like(logits)
    sculpting[:, W] = np.where(near_w, 3.0, -3.0) + noise  # tags W by mass alone
    result = compare_selections(logits, sculpting, labels, observables, 0.5)
    w_background_mass = result["classes"]["W"]["background"]["mass"]
    assert w_background_mass["distance"] > 0.3 and w_background_mass["significant"]
    assert result["max_distance"] > GatesConfig().max_observable_distance
    assert result["worst"].startswith("W/background/mass")


def test_gates_report_value_limit_and_verdict() -> None:
    config = GatesConfig(max_accuracy_drop=0.02, max_observable_distance=0.1,
                         min_bit_exact_fraction=1.0, max_lut=1000, max_latency_ns=None)  # fmt: skip
    gates = evaluate_gates(config, {"accuracy_drop": 0.01, "observable_distance": 0.3,
                                    "bit_exact_fraction": 1.0, "lut": 1200})  # fmt: skip
    assert gates["max_accuracy_drop"] == {"value": 0.01, "limit": 0.02, "verdict": "passed",
                                          "uncertainty": None, "jets": None,
                                          "jets_needed": None}  # fmt: skip
    assert failed(gates) == ["max_observable_distance", "max_lut"]
    assert "max_latency_ns" not in gates
    only_dsp = GatesConfig(max_accuracy_drop=None, max_observable_distance=None,
                           min_bit_exact_fraction=None, max_dsp=0)  # fmt: skip
    assert failed(evaluate_gates(only_dsp, {})) == ["max_dsp"]


def test_report_compares_both_models_through_the_same_cost_model() -> None:
    """The report gives the like-for-like ratio of the two cost-model estimates."""
    from trigger.validation.report import _same_cost_model

    def da4ml(lut: float, bits: int, stages: int) -> dict:
        cost = {"lut_estimate": lut, "register_bits": bits, "pipeline_stages": stages}
        return {"tools": {"da4ml": cost}}

    line = _same_cost_model(
        {
            "compressed_estimate": da4ml(100_000, 30_000, 8),
            "float_reference_estimate": da4ml(1_000_000, 300_000, 13),
        }
    )
    assert "LUT 100,000 vs 1,000,000 (0.10x)" in line and "pipeline stages 8 vs 13" in line


def test_report_names_who_counted_the_input_stage() -> None:
    """Measured (Yosys, under --rtl) only when the compressed figures are a measurement."""
    from trigger.validation.report import _input_stage_sentence

    estimate = {"input_stage": {"latency_cycles": 2, "lut": 6720, "ff": 5695}}
    inputs = {"constituents": 32, "features": ["pt", "deta", "dphi", "count"]}
    estimated = {"compressed": estimate, "compressed_estimate": estimate,
                 "measured_over_estimate": None, "inputs": inputs}  # fmt: skip
    text = _input_stage_sentence(estimated)
    assert "da4ml's estimate of the input stage alone: 2 cycles, 6,720 LUT, 5,695 FF." in text
    assert "the input stage computing (pt, deta, dphi, count) from them runs inside" in text
    yosys = {"input_stage": {"latency_cycles": 2, "lut": 3016, "ff": 3999}}
    measured = {**estimated, "compressed": yosys, "measured_over_estimate": {"lut": 0.7}}
    assert "Yosys's count of the input stage alone: 2 cycles, 3,016 LUT, 3,999 FF." in (
        _input_stage_sentence(measured)
    )


def test_effect_size_and_judgeability_do_not_depend_on_significance() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 2, 40), rng.normal(0, 2, 40) + 1.0
    few = ks_distance(a, b)
    assert few["mean_shift"] == pytest.approx((b.mean() - a.mean()) / a.std())
    # 40 jets a side cannot resolve a distance of 0.1 (the critical distance is 0.36) ...
    assert not few["judgeable"] and critical_distance(40, 40) > 0.1
    # ... 3,000 a side can, and the effect size of the same shift stays about half a sd.
    many = ks_distance(rng.normal(0, 2, 3000), rng.normal(0, 2, 3000) + 1.0)
    assert many["judgeable"] and many["significant"]
    assert 0.4 < many["mean_shift"] < 0.6 and 0.2 < few["mean_shift"] < 1.0


def _outputs(correct_float: np.ndarray, correct_firmware: np.ndarray, labels: np.ndarray):
    """Logits calling each jet right (its label) or wrong (the next class), per predictor."""

    def logits(correct: np.ndarray) -> np.ndarray:
        calls = np.where(correct, labels, (labels + 1) % 5)
        return np.log(np.where(np.eye(5)[calls] == 1, 0.6, 0.1))

    out = {"float": logits(correct_float), "firmware": logits(correct_firmware)}
    return out | {"student": out["firmware"]}


def test_shift_summary_measures_the_firmwares_extra_loss_with_its_uncertainty() -> None:
    from trigger.validation.shift import Evaluated, shift_summary

    rng = np.random.default_rng(0)
    labels = np.arange(2000) % 5
    nominal_float = rng.random(2000) < 0.7
    nominal = _outputs(nominal_float, nominal_float, labels)  # firmware == float there
    shifted_float = rng.random(2000) < 0.6
    # Under the shift the firmware also misses 1 in 10 of the jets the float model gets right.
    shifted_firmware = shifted_float & (rng.random(2000) > 0.1)
    shifted = _outputs(shifted_float, shifted_firmware, labels)
    observables = {"mass": rng.normal(80, 10, 2000)}
    summary = shift_summary(Evaluated(nominal, labels, observables),
                            Evaluated(shifted, labels, observables), 0.5, 0.1)  # fmt: skip
    change = {k: v["accuracy_change"] for k, v in summary["predictors"].items()}
    assert change["float"] == pytest.approx(shifted_float.mean() - nominal_float.mean())
    lost = (shifted_float & ~shifted_firmware).mean()
    assert summary["firmware_minus_float_accuracy_change"] == pytest.approx(-lost)
    assert summary["degradation"] == pytest.approx(lost) and lost > 0.04
    # Paired per-jet differences (0 or -1) on the shifted sample; none on the nominal one.
    d = -(shifted_float & ~shifted_firmware).astype(float)
    assert summary["uncertainty"] == pytest.approx(np.sqrt(d.var(ddof=1) / 2000))
    assert summary["significant"]
    assert summary["variance_share"] == {"nominal": 0.0, "shifted": 1.0}
    # A firmware equal to the float model under the shift: no extra loss, not significant.
    same = shift_summary(Evaluated(nominal, labels, observables),
                         Evaluated(_outputs(shifted_float, shifted_float, labels), labels,
                                   observables), 0.5, 0.1)  # fmt: skip
    assert same["firmware_minus_float_accuracy_change"] == 0 and not same["significant"]


def test_shift_gate_bounds_the_worst_degradation() -> None:
    def passed(limit: float, value: float | None) -> bool:
        config = GatesConfig(max_shift_degradation=limit)
        gate = evaluate_gates(config, {"shift_degradation": value})["max_shift_degradation"]
        return gate["verdict"] == "passed"

    assert not passed(0.01, 0.02) and passed(0.03, 0.02)
    # Asked for, with no shifted sample to measure it on: the gate cannot pass.
    assert not passed(0.03, None)
