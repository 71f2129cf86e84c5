"""Gates that decide, fail, or say they cannot judge; the evaluation file's independence; the
baseline's cache; shift uncertainties against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from tests.conftest import write_synthetic_file
from trigger.artifacts import TRAIN, data_identity, seal
from trigger.config import DataConfig, GatesConfig, QuantizerConfig
from trigger.errors import CheckFailed, TriggerError
from trigger.validation.gates import Measurement, evaluate_gates, overall, undecided
from trigger.validation.metrics import auc_uncertainty, mean_auc
from trigger.validation.observables import compare_selections, critical_distance, jets_to_judge

KS_ONLY = GatesConfig(max_accuracy_drop=None, max_observable_distance=0.1,
                      min_bit_exact_fraction=None)  # fmt: skip


def _toy(n: int, seed: int = 0):
    """Five classes, a mediocre tagger; the firmware equal to the float reference."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, n)
    observables = {"mass": rng.uniform(0, 250, n), "multiplicity": rng.poisson(40, n) * 1.0}
    probs = np.full((n, 5), 0.1) + rng.uniform(0, 0.3, (n, 5))
    probs[np.arange(n), labels] += 0.15
    return labels, observables, np.log(probs / probs.sum(axis=1, keepdims=True))


def test_jets_needed_follow_from_the_critical_distance() -> None:
    # c(0.01) = sqrt(-ln(0.005) / 2) = 1.6276; 40 and 40 selected of 200 jets: the critical
    # KS distance is 1.6276 sqrt(2/40) = 0.36395; a limit of 0.1 needs (0.36395 / 0.1)^2 =
    # 13.246 times the jets: 2,650.
    assert critical_distance(40, 40) == pytest.approx(np.sqrt(-np.log(0.005) / 2) * np.sqrt(0.05))
    assert critical_distance(40, 40) == pytest.approx(0.36395, abs=1e-5)
    assert jets_to_judge(40, 40, 200, 0.1, 0.99) == 2650
    # At that size the selections (grown in proportion) just resolve the limit.
    grown, short = 40 * 2650 / 200, 40 * 2649 / 200
    assert critical_distance(grown, grown) <= 0.1 < critical_distance(short, short)
    assert jets_to_judge(0, 40, 200, 0.1, 0.99) is None  # an empty selection: no estimate


def test_a_tiny_selection_leaves_the_distance_gate_undecided_not_passed() -> None:
    labels, observables, logits = _toy(200)
    small = compare_selections(logits, logits.copy(), labels, observables, 0.5, 0.1)
    assert small["max_distance"] == 0.0 and small["too_small_to_judge"] > 0
    figure = Measurement(small["max_distance"], jets=200, jets_needed=small["jets_needed"])
    gate = evaluate_gates(KS_ONLY, {"observable_distance": figure})["max_observable_distance"]
    assert gate["verdict"] == "undecided" and gate["jets"] == 200
    assert gate["jets_needed"] > 200
    # The jets it asks for do decide it: the same tagger on that many jets passes.
    labels, observables, logits = _toy(gate["jets_needed"], seed=1)
    large = compare_selections(logits, logits.copy(), labels, observables, 0.5, 0.1)
    assert large["too_small_to_judge"] == 0 and large["jets_needed"] <= len(labels)
    figure = Measurement(large["max_distance"], jets=len(labels), jets_needed=large["jets_needed"])
    assert (
        evaluate_gates(KS_ONLY, {"observable_distance": figure})["max_observable_distance"][
            "verdict"
        ]
        == "passed"
    )


def test_a_gate_with_an_uncertainty_decides_only_beyond_z_standard_errors() -> None:
    config = GatesConfig(max_accuracy_drop=0.03, max_observable_distance=None,
                         min_bit_exact_fraction=None)  # fmt: skip
    z = norm.ppf(0.99)  # one-sided 99%: 2.326

    def gate(value: float) -> dict:
        figure = Measurement(value, uncertainty=0.01, jets=1000)
        return evaluate_gates(config, {"accuracy_drop": figure})["max_accuracy_drop"]

    assert gate(0.0)["verdict"] == "passed"  # 3 standard errors below
    assert gate(0.07)["verdict"] == "failed"  # 4 above
    near = gate(0.02)  # 1 below: undecided; sigma falls as 1/sqrt(jets)
    assert near["verdict"] == "undecided"
    assert near["jets_needed"] == int(np.ceil(1000 * (z * 0.01 / 0.01) ** 2)) == 5412
    assert gate(0.04)["verdict"] == "undecided"  # 1 above: not failed either
    assert gate(0.03)["jets_needed"] is None  # at the limit: no finite number decides it
    # A failure anywhere decides the whole report; else an undecided gate leaves it undecided.
    gates = {"a": gate(0.0), "b": near}
    assert overall(gates) == "undecided" and undecided(gates) == ["b"]
    assert overall({**gates, "c": gate(0.07)}) == "failed"
    # One measurement per shifted sample: any undecided one leaves the gate undecided.
    shift = GatesConfig(max_accuracy_drop=None, max_observable_distance=None,
                        min_bit_exact_fraction=None, max_shift_degradation=0.03)  # fmt: skip
    both = [Measurement(0.0, 0.01, 1000), Measurement(0.02, 0.01, 1000)]
    result = evaluate_gates(shift, {"shift_degradation": both})["max_shift_degradation"]
    assert result["verdict"] == "undecided" and result["jets_needed"] == 5412


def _metrics(gates: dict, allow: bool) -> dict:
    from trigger.validation.gates import failed

    predictors = {"float": {"accuracy": 0.7}, "firmware": {"accuracy": 0.69}}
    return {
        "classification": {"predictors": predictors, "firmware_student_bit_exact_fraction": 1.0},
        "gates": gates,
        "decision": {"verdict": overall(gates), "failed": failed(gates),
                     "undecided": undecided(gates), "allow_undecided": allow,
                     "confidence": 0.99},
    }  # fmt: skip


def test_undecided_gates_exit_1_naming_the_jets_needed_unless_allowed(capsys, tmp_path) -> None:
    from trigger.cli.validate import report_gates
    from trigger.validation.report import _gates_section

    undecided_gate = {"value": 0.0, "limit": 0.1, "uncertainty": None, "jets": 2000,
                      "jets_needed": 23456, "verdict": "undecided"}  # fmt: skip
    gates = {"max_observable_distance": undecided_gate}
    with pytest.raises(CheckFailed) as error:
        report_gates(_metrics(gates, allow=False), tmp_path)
    message = str(error.value)
    assert message.startswith("validation gates undecided: max_observable_distance needs 23,456")
    out = capsys.readouterr().out
    assert "UNDECIDED on 2,000 jets, needs 23,456 jets" in out and "PASSED" not in out
    report_gates(_metrics(gates, allow=True), tmp_path)  # allowed: no exit 1
    section = "\n".join(_gates_section(gates, _metrics(gates, allow=True)["decision"]))
    row = section.splitlines()[3]
    assert "**UNDECIDED**" in row and "**23,456**" in row and "passed" not in row


def test_hanley_mcneil_auc_error_and_the_mean_auc() -> None:
    # A = 0.8, 10 signal, 20 background: Q1 = 0.8/1.2, Q2 = 1.28/1.8.
    q1, q2 = 0.8 / 1.2, 2 * 0.64 / 1.8
    expected = np.sqrt((0.8 * 0.2 + 9 * (q1 - 0.64) + 19 * (q2 - 0.64)) / 200)
    assert auc_uncertainty(0.8, 10, 20) == pytest.approx(expected)
    labels, _, logits = _toy(500)
    value, error = mean_auc(logits, labels)
    assert 0.5 < value < 1 and 0 < error < 0.05


def test_shift_reports_errors_per_model_variance_shares_and_the_size_of_the_shift() -> None:
    from trigger.validation.shift import Evaluated, shift_summary

    labels = np.arange(10) % 5
    eye = np.log(np.where(np.eye(5) == 1, 0.6, 0.1))

    def outputs(right_float: list[bool], right_firmware: list[bool]) -> dict:
        def logits(right: list[bool]) -> np.ndarray:
            return eye[np.where(right, labels, (labels + 1) % 5)]

        return {"float": logits(right_float), "firmware": logits(right_firmware)}

    # Nominal: float right on 8 of 10, firmware loses 2 of them (paired d: two -1, eight 0).
    nominal = outputs([True] * 8 + [False] * 2, [True] * 6 + [False] * 4)
    # Shifted (20 jets): float right on 10, firmware on 9 of those (one -1, nineteen 0).
    labels2 = np.arange(20) % 5
    right = np.arange(20) < 10
    firmware_right = np.arange(20) < 9
    shifted = {
        "float": eye[np.where(right, labels2, (labels2 + 1) % 5)],
        "firmware": eye[np.where(firmware_right, labels2, (labels2 + 1) % 5)],
    }
    mass_nominal = np.arange(10.0)
    mass_shifted = np.arange(20.0) + 5  # half of it above every nominal jet
    summary = shift_summary(
        Evaluated(nominal, labels, {"mass": mass_nominal}, {"pt": np.arange(10.0)}),
        Evaluated(shifted, labels2, {"mass": mass_shifted}, {"pt": np.arange(20.0)}),
        0.5, 0.1,
    )  # fmt: skip
    float_ = summary["predictors"]["float"]
    assert float_["accuracy_nominal"] == 0.8 and float_["accuracy_shifted"] == 0.5
    assert float_["accuracy_nominal_uncertainty"] == pytest.approx(np.sqrt(0.8 * 0.2 / 10))
    assert float_["accuracy_change_uncertainty"] == pytest.approx(
        np.sqrt(0.8 * 0.2 / 10 + 0.5 * 0.5 / 20)
    )
    # Paired variances of the mean: nominal var(d, ddof=1) = 0.2 * 0.8 * 10 / 9 / 10, shifted
    # 0.05 * 0.95 * 20 / 19 / 20; firmware minus float: -0.05 - (-0.2) = +0.15.
    v_nominal = 0.2 * 0.8 / 9
    v_shifted = 0.05 * 0.95 / 19
    assert summary["firmware_minus_float_accuracy_change"] == pytest.approx(0.15)
    assert summary["uncertainty"] == pytest.approx(np.sqrt(v_nominal + v_shifted))
    share = summary["variance_share"]
    assert share["nominal"] == pytest.approx(v_nominal / (v_nominal + v_shifted))
    assert share["nominal"] > 0.5 and summary["nominal_limits"]
    # Size of the shift: KS of 0..9 against 5..24 is 0.75 (at 9: 1.0 vs 0.25).
    assert summary["size"]["observables"]["mass"]["distance"] == pytest.approx(0.75)
    assert summary["size"]["max_inputs_distance"] == pytest.approx(0.5)  # 0..9 vs 0..19


def _sealed_run(folder: Path, data: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "float.h5").write_text("stand-in")
    seal(folder, TRAIN, {"data": data_identity(data), "recipe": "r"})


def _manifest(path: Path, seeds: list[int]) -> None:
    shards = [{"seed": s} for s in seeds]
    path.with_name(path.stem + ".manifest.json").write_text(json.dumps({"shards": shards}))


def test_an_evaluation_file_must_hold_jets_no_run_trained_on(tmp_path: Path) -> None:
    from trigger.artifacts import read_artifact
    from trigger.validation.stage import check_unseen

    training = write_synthetic_file(
        tmp_path / "train.h5", 40, seed=0
    )  # every class in its test split
    other = write_synthetic_file(tmp_path / "other.h5", 10, seed=1)
    fresh = write_synthetic_file(tmp_path / "fresh.h5", 10, seed=2)
    _sealed_run(tmp_path / "runs/mine", training)
    _sealed_run(tmp_path / "runs/other", other)
    run = read_artifact(tmp_path / "runs/mine")
    with pytest.raises(TriggerError, match=r"other.h5 is the training data of .*runs/other"):
        check_unseen(other, run, training)
    _manifest(training, [11, 12])
    _manifest(fresh, [12, 13])
    with pytest.raises(TriggerError, match=r"repeats generator seeds .* \(1 shards\)"):
        check_unseen(fresh, run, training)
    _manifest(fresh, [21, 22])
    assert check_unseen(fresh, run, training) == data_identity(fresh)
    # The sampler: every jet of a fresh file, the test split of the training file itself.
    from trigger.config import Recipe, ValidationConfig
    from trigger.validation.stage import evaluation_sampler

    def recipe(data: Path) -> Recipe:
        return Recipe(validation=ValidationConfig(data=str(data)))

    assert evaluation_sampler(run, recipe(fresh), training, 50)[1]["jets_from"] == "every jet of"
    same = evaluation_sampler(run, recipe(training), training, None)[1]
    assert same["jets_from"] == "the test split of"
    with pytest.raises(TriggerError, match=r"--test-jets 51 is more than the 50 jets of"):
        evaluation_sampler(run, recipe(fresh), training, 51)
    with pytest.raises(TriggerError, match="data file not found"):
        check_unseen(tmp_path / "none.h5", run, training)


def test_the_baseline_is_cached_per_data_split_and_features(synthetic_data, tmp_path) -> None:
    from trigger.validation.baseline import baseline_logits, cached_baseline

    data, port = DataConfig(path=str(synthetic_data)), QuantizerConfig(bits=16, integer=6)
    identity = data_identity(synthetic_data)
    first = cached_baseline(data, port, synthetic_data, identity, tmp_path, log=lambda _: None)
    again = cached_baseline(data, port, synthetic_data, identity, tmp_path, log=lambda _: None)
    assert first.trained and not again.trained and again.folder == first.folder
    from trigger.data.loader import read_jets

    jets = read_jets(synthetic_data, 1)
    logits = baseline_logits(first.model, jets.observables, "toy")
    np.testing.assert_array_equal(logits, baseline_logits(again.model, jets.observables, "toy"))
    assert np.mean(logits.argmax(axis=1) == jets.labels) > 0.5  # toy masses separate classes
    other_split = data.model_copy(update={"split_seed": 1})
    moved = cached_baseline(other_split, port, synthetic_data, identity, tmp_path,
                            log=lambda _: None)  # fmt: skip
    assert moved.trained and moved.folder != first.folder


def test_the_candidate_view_reclusters_the_leading_n_against_all(tmp_path: Path) -> None:
    from trigger.data.layout import JET_FEATURES, PARTICLE_FEATURES, write_jets_file
    from trigger.validation.view import candidate_view

    # One top jet of three massless candidates of comparable pT (soft drop keeps them all),
    # one gluon jet that the view ignores.
    pt = np.array([400.0, 300.0, 200.0])
    eta, phi = np.array([0.0, 0.2, -0.15]), np.array([0.0, 0.1, 0.2])
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta), pt * np.cosh(eta)], 1)
    constituents = np.zeros((2, 150, len(PARTICLE_FEATURES)), np.float32)
    for k, name in enumerate(("j1_px", "j1_py", "j1_pz", "j1_e")):
        constituents[:, :3, PARTICLE_FEATURES.index(name)] = p4[:, k]
    jets = np.zeros((2, len(JET_FEATURES)), np.float32)
    jets[0, JET_FEATURES.index("j_t")] = jets[1, JET_FEATURES.index("j_g")] = 1
    write_jets_file(tmp_path / "top.h5", constituents, jets)

    def mass(p: np.ndarray) -> float:
        total = p.sum(axis=0)
        return float(np.sqrt(total[3] ** 2 - np.sum(total[:3] ** 2)))

    p4 = p4.astype(np.float32).astype(np.float64)  # as stored
    view = candidate_view(tmp_path / "top.h5", 2)
    assert view["jets"] == 1 and view["jets_with_more_candidates"] == 1
    assert view["median_all"] == pytest.approx(mass(p4), rel=1e-4)
    assert view["median_leading"] == pytest.approx(mass(p4[:2]), rel=1e-4)
    assert view["median_shift"] == pytest.approx(mass(p4[:2]) - mass(p4), rel=1e-3)
