"""End to end on real Pythia jets: `trigger run`, bit-exact firmware, validation and its gates.

The bit-accurate emulation test lives here in its strongest form: students trained by the
real pipeline for two recipes (different N, widths and bit widths), every output bit of the
C++ emulator compared with QKeras on every one of a few thousand Pythia jets.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.constituents import edge_case_words, permute_candidates
from trigger.data.generate import GenerationSettings, generate
from trigger.data.loader import read_jets
from trigger.inputs import InputStage

pytest.importorskip("qkeras")

TRIGGER = str(Path(sys.executable).with_name("trigger"))
ROOT = Path(__file__).resolve().parents[1]
FAST = {
    "training": {"epochs": 6, "batch_size": 128, "learning_rate": 0.01, "patience": 3},
    "distillation": {"teacher": {"epochs": 4, "batch_size": 128, "learning_rate": 0.01,
                                 "architecture": {"embed": 16, "blocks": 1, "rho": [32]}}},
}  # fmt: skip
SECOND = {  # another N, other widths, other bit widths
    "data": {"n_constituents": 32, "features": ["deta", "dphi", "dr2", "count"]},
    "architecture": {"phi": [16, 16, 16], "rho": [16]},
    "quantization": {"input": {"bits": 10, "integer": 3},
                     "default": {"weight": {"bits": 6, "integer": 1},
                                 "bias": {"bits": 6, "integer": 1},
                                 "activation": {"bits": 6, "integer": 2}}},
    "distillation": {"enabled": False},
}  # fmt: skip


@pytest.fixture(scope="session")
def real_jets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,500 Pythia jets (500 per class)."""
    path = tmp_path_factory.mktemp("real") / "jets.h5"
    return generate(GenerationSettings(jets_per_class=500, seed=99, shard_size=250), path, 2)


def write_recipe(path: Path, data: Path, *extra: dict, base: str = "default") -> Path:
    tree = yaml.safe_load((ROOT / "models" / f"{base}.yaml").read_text()) or {}
    for section in (FAST, {"data": {"path": str(data)}}, *extra):
        for key, value in section.items():
            if isinstance(value, dict):
                tree[key] = _merge(tree.get(key, {}), value)
            else:
                tree[key] = value
    path.write_text(yaml.safe_dump(tree))
    return path


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def trigger(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([TRIGGER, *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="session")
def pipeline(real_jets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`trigger run` of the default recipe (fast training) in a fresh working directory."""
    work = tmp_path_factory.mktemp("work")
    write_recipe(work / "demo.yaml", real_jets)
    result = trigger("run", "demo.yaml", cwd=work)
    assert result.returncode in (0, 1), result.stderr  # 1: a gate failed, reported below
    assert "report:" in result.stdout, result.stdout + result.stderr
    return work


def all_words_for(run_dir: Path, data: Path) -> np.ndarray:
    """Every jet of the file as the firmware receives it, plus the input stage's edge cases."""
    stage = InputStage.load(run_dir / "input_stage.json")
    words = read_jets(data, stage.n_constituents).words
    return np.concatenate([words, edge_case_words(stage.n_constituents, np.random.default_rng(3))])


def assert_firmware_is_bit_exact(run_dir: Path, firmware_dir: Path, words: np.ndarray) -> None:
    """The firmware (input stage + network) equals the run's own input stage + QKeras, and the
    fast emulator of the emitted directory equals both."""
    from trigger.hls import emulate
    from trigger.hls.fast import load_fast_emulator
    from trigger.taggers import load_model, predict

    stage = InputStage.load(run_dir / "input_stage.json")
    student = load_model(run_dir / "student.h5")
    expected = predict(student, stage.apply_words(words))
    np.testing.assert_array_equal(emulate(firmware_dir, words), expected)
    np.testing.assert_array_equal(load_fast_emulator(firmware_dir)(words), expected)
    # Candidates in another order change no output bit.
    rng = np.random.default_rng(0)
    permuted = permute_candidates(words, stage.n_constituents, rng)
    np.testing.assert_array_equal(emulate(firmware_dir, permuted), emulate(firmware_dir, words))


@pytest.mark.slow
def test_default_recipe_firmware_is_bit_exact_on_every_real_jet(pipeline, real_jets) -> None:
    run_dir, firmware_dir = pipeline / "runs" / "demo", pipeline / "firmware" / "demo"
    words = all_words_for(run_dir, real_jets)
    assert len(words) > 2500
    assert_firmware_is_bit_exact(run_dir, firmware_dir, words)


@pytest.mark.slow
def test_default_recipe_testbench_proves_exactness(pipeline, tmp_path) -> None:
    from tests.test_hls import assert_testbench_proves_exactness

    testbench = json.loads((pipeline / "firmware/demo/emulation.json").read_text())["testbench"]
    assert testbench == {"jets": 500, "exit_code": 0, "printed": "bit-exact: 500 of 500 jets"}
    assert_testbench_proves_exactness(pipeline / "firmware/demo", tmp_path / "firmware")


@pytest.mark.slow
def test_second_recipe_firmware_is_bit_exact_on_every_real_jet(real_jets, tmp_path) -> None:
    from trigger.config import load_recipe
    from trigger.hls import emit_hls
    from trigger.training.stage import train_and_compress

    recipe = load_recipe(write_recipe(tmp_path / "second.yaml", real_jets, SECOND))
    run_dir = train_and_compress(recipe, real_jets, tmp_path / "runs" / "second", verbose=0,
                                 log=lambda _: None)  # fmt: skip
    firmware_dir = emit_hls(run_dir, tmp_path / "firmware" / "second")
    words = all_words_for(run_dir, real_jets)
    assert words.shape[1] == 3 * 32 + 4
    assert_firmware_is_bit_exact(run_dir, firmware_dir, words)


@pytest.mark.slow
def test_emulate_gives_every_jets_logits_chunk_by_chunk(pipeline, real_jets, tmp_path) -> None:
    """`trigger emulate` over a file four chunks long equals one emulator call on all of it,
    with either engine; an earlier output is replaced only with --force."""
    import h5py

    from trigger.hls import emulate

    firmware_dir = pipeline / "firmware" / "demo"
    stage = InputStage.load(firmware_dir / "input_stage.json")
    expected = emulate(firmware_dir, read_jets(real_jets, stage.n_constituents).words)
    for engine in ("fast", "hls"):
        out = tmp_path / f"{engine}.h5"
        args = ["emulate", str(firmware_dir), "--data", str(real_jets), "--out", str(out)]
        result = trigger(*args, "--engine", engine, "--chunk-jets", "700", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        with h5py.File(out, "r") as f:
            np.testing.assert_array_equal(f["logits"][()], expected)
            np.testing.assert_array_equal(f["top_class"][()], expected.argmax(axis=1))
            assert f.attrs["engine"] == engine
    again = trigger(*args, cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"trigger: error: {out} holds an earlier `trigger emulate` output: pass --force to "
        "replace it"
    )
    assert trigger(*args, "--force", cwd=tmp_path).returncode == 0


@pytest.mark.slow
def test_emulate_refuses_what_does_not_fit_in_one_line(pipeline, real_jets, tmp_path) -> None:
    from tests.conftest import synthetic_jets
    from trigger.data.layout import write_jets_file

    firmware_dir = str(pipeline / "firmware" / "demo")
    narrow = tmp_path / "narrow.h5"
    write_jets_file(narrow, *synthetic_jets(20, max_particles=16))
    out = tmp_path / "p.h5"
    cases = {
        ("--data", str(narrow), "--out", str(out)): (
            f"{narrow}: holds 16 constituents per jet, the firmware takes 32"
        ),
        ("--data", str(real_jets), "--out", str(narrow)): (
            f"{narrow} exists and `trigger emulate` did not write it: choose another output"
        ),
        ("--data", str(real_jets), "--out", str(real_jets)): (
            f"output {real_jets} is this command's input {real_jets}: choose another output"
        ),
    }
    for args, message in cases.items():
        result = trigger("emulate", firmware_dir, *args, cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.strip() == f"trigger: error: {message}"
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["narrow.h5"]
    not_firmware = trigger("emulate", str(tmp_path), "--data", str(real_jets), "--out", str(out),
                           cwd=tmp_path)  # fmt: skip
    assert not_firmware.returncode == 2 and len(not_firmware.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_validate_on_a_shifted_sample_reports_and_gates_the_extra_loss(pipeline, tmp_path) -> None:
    settings = GenerationSettings(jets_per_class=80, seed=5, shard_size=80, candidate_pt_min=3.0)
    shifted = generate(settings, tmp_path / "threshold3.h5", 1)
    out = tmp_path / "shift"
    args = ["validate", "runs/demo", "--firmware", "firmware/demo", "--out", str(out),
            "--test-jets", "300", "--shifted", f"threshold={shifted}"]  # fmt: skip
    result = trigger(*args, cwd=pipeline)
    assert result.returncode in (0, 1), result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classification"]["test_jets"] == 300
    shift = metrics["shift"]["threshold"]
    p = shift["predictors"]
    assert shift["jets"] == 300 and set(p) == {"baseline", "teacher", "float", "student",
                                               "firmware"}  # fmt: skip
    change = p["firmware"]["accuracy_change"] - p["float"]["accuracy_change"]
    assert shift["firmware_minus_float_accuracy_change"] == pytest.approx(change)
    assert 0 < shift["uncertainty"] < 0.1
    assert 0 < p["float"]["accuracy_change_uncertainty"] < 0.1
    assert sum(shift["variance_share"].values()) == pytest.approx(1.0)
    assert shift["size"]["observables"]["multiplicity"]["distance"] > 0  # fewer candidates
    report = (out / "report.md").read_text()
    assert "## Distribution shift" in report and "Share of the variance: nominal sample" in report
    # The recipe gate: decided beyond z standard errors of the measured degradation (failed
    # below it, exit 1; passed above it), undecided at it.
    measured, margin = shift["degradation"], 2.4 * shift["uncertainty"]
    for limit, verdict in ((measured - margin, "failed"), (measured + margin, "passed"),
                           (measured, "undecided")):  # fmt: skip
        gate = f"validation.gates.max_shift_degradation={limit}"
        result = trigger(*args, "--force", "--set", gate, cwd=pipeline)
        gates = json.loads((out / "metrics.json").read_text())["gates"]
        assert gates["max_shift_degradation"]["verdict"] == verdict
        assert verdict == "passed" or (
            result.returncode == 1 and "max_shift_degradation" in result.stderr
        )


@pytest.mark.slow
def test_a_tiny_evaluation_leaves_gates_undecided_and_exits_1(pipeline, tmp_path) -> None:
    out = tmp_path / "tiny"
    args = ["validate", "runs/demo", "--firmware", "firmware/demo", "--out", str(out),
            "--test-jets", "200", "--set", "validation.gates.max_accuracy_drop=1.0"]  # fmt: skip
    result = trigger(*args, cwd=pipeline)
    assert result.returncode == 1, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    gate = metrics["gates"]["max_observable_distance"]
    assert gate["verdict"] == "undecided" and gate["jets"] == 200
    assert gate["jets_needed"] is None or gate["jets_needed"] > 200
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("trigger: validation gates undecided: max_observable_distance needs ")
    assert "reusing baseline" in result.stdout  # `trigger run` trained it: not again
    assert "max_observable_distance" in result.stdout and "UNDECIDED" in result.stdout
    report = (out / "report.md").read_text()
    assert "Gates: **UNDECIDED**" in report and "PASSED" not in report
    allowed = trigger(*args, "--force", "--allow-undecided", cwd=pipeline)
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads((out / "metrics.json").read_text())["gates"] == metrics["gates"]


@pytest.mark.slow
def test_validate_on_a_separate_evaluation_file(pipeline, real_jets, tmp_path) -> None:
    settings = GenerationSettings(jets_per_class=60, seed=7, shard_size=60)
    evaluation = generate(settings, tmp_path / "evaluation.h5", 1)
    out = tmp_path / "separate"
    base = ["validate", "runs/demo", "--firmware", "firmware/demo", "--allow-undecided"]
    result = trigger(*base, "--out", str(out), "--data", str(evaluation), cwd=pipeline)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluation"]["jets_from"] == "every jet of"
    assert metrics["classification"]["test_jets"] == 300
    # The run's own file: its test split, never its training jets.
    same = trigger(*base, "--out", str(tmp_path / "same"), "--data", str(real_jets), cwd=pipeline)
    assert same.returncode == 0, same.stderr
    recorded = json.loads((tmp_path / "same/metrics.json").read_text())["evaluation"]
    assert recorded["jets"] == 500 and recorded["jets_from"] == "the test split of"
    # A file made with the training data's seed repeats its jets: refused before any work.
    repeat = generate(GenerationSettings(jets_per_class=60, seed=99, shard_size=250),
                      tmp_path / "repeat.h5", 1)  # fmt: skip
    refused = trigger(*base, "--out", str(tmp_path / "r"), "--data", str(repeat), cwd=pipeline)
    assert refused.returncode == 2 and "repeats generator seeds" in refused.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_validate_refuses_bad_samples_in_one_line(pipeline, tmp_path) -> None:
    from tests.conftest import synthetic_jets
    from trigger.data.layout import JET_FEATURES, write_jets_file

    narrow = tmp_path / "narrow.h5"
    write_jets_file(narrow, *synthetic_jets(20, max_particles=16))
    gluons = tmp_path / "gluons.h5"
    constituents, jets = synthetic_jets(40, max_particles=32)
    labels = [JET_FEATURES.index(f"j_{c}") for c in ("g", "q", "w", "z", "t")]
    jets[:, labels] = 0.0
    jets[:, labels[0]] = 1.0
    write_jets_file(gluons, constituents, jets)
    out = tmp_path / "v"
    base = ["validate", "runs/demo", "--firmware", "firmware/demo", "--out", str(out)]
    cases = {
        ("--shifted", f"narrow={narrow}"): (
            f"{narrow}: holds 16 constituents per jet, the firmware takes 32"
        ),
        ("--test-jets", "501"): "--test-jets 501 is more than the 500 jets of the test split of",
        ("--shifted", "nofile"): "--shifted takes NAME=FILE, got 'nofile'",
        ("--shifted", f"g={gluons}"): f"{gluons}: the shifted sample holds no q, W, Z, t jets",
        ("--data", str(gluons)): f"{gluons}: the evaluation file holds no q, W, Z, t jets",
    }
    for extra, message in cases.items():
        result = trigger(*base, *extra, cwd=pipeline)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().startswith(f"trigger: error: {message}")
        assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.slow
def test_run_writes_a_self_contained_report(pipeline) -> None:
    out = pipeline / "validation" / "demo"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"evaluation", "baseline", "classification", "observables",
                            "hardware", "gates", "decision", "candidate_view"}  # fmt: skip
    predictors = metrics["classification"]["predictors"]
    assert set(predictors) == {"baseline", "teacher", "float", "student", "firmware"}
    assert predictors["firmware"] == predictors["student"]  # bit-exact: identical metrics
    assert metrics["classification"]["firmware_student_bit_exact_fraction"] == 1.0
    for gate in metrics["gates"].values():
        assert set(gate) == {"value", "limit", "uncertainty", "verdict", "jets", "jets_needed"}
    # The baseline: trained once on the run's training split, cached beside the runs.
    assert metrics["baseline"]["features"] == ["mass", "mass_mmdt", "multiplicity"]
    assert Path(metrics["baseline"]["cache"]).parent == (pipeline / "runs/.baselines").resolve()
    assert 0.2 < predictors["baseline"]["accuracy"] < 1
    hardware = metrics["hardware"]
    # Without --rtl or --synth: da4ml's estimate for both, the report says so.
    assert hardware["compressed"] == hardware["compressed_estimate"]
    assert hardware["compressed"]["source"] == "estimate (da4ml cost model)"
    assert hardware["compressed"]["dsp"] == 0 and hardware["measured_over_estimate"] is None
    assert hardware["ratio"]["lut"] < 1
    # The report says the figures start from L1 words, input stage included, and its share.
    recipe = yaml.safe_load((pipeline / "demo.yaml").read_text())
    features = ", ".join(recipe["data"]["features"])
    report = (out / "report.md").read_text()
    assert f"the input stage computing ({features}) from them runs inside the firmware" in report
    assert "covers the whole path, words to logits" in report
    alone = hardware["compressed_estimate"]["input_stage"]
    assert 0 < alone["lut"] < hardware["compressed"]["lut"]
    assert (
        f"da4ml's estimate of the input stage alone: {alone['latency_cycles']} cycles, "
        f"{alone['lut']:,} LUT, {alone['ff']:,} FF." in report
    )
    baseline_row = f"| baseline | {predictors['baseline']['accuracy']:.4g} |"
    assert baseline_row in report and "Firmware accuracy minus the baseline's" in report
    # Top jets lose soft-drop mass when only the firmware's leading 32 candidates are kept.
    view = metrics["candidate_view"]
    assert view["n_candidates"] == 32 and view["median_shift"] < 0
    assert "## What 32 candidates see" in report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6 and 'src="roc.png"' not in html
    for png in ("roc.png", "efficiency.png", "hardware.png", "observables_W.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_rerun_skips_up_to_date_stages(pipeline) -> None:
    marker = pipeline / "validation/demo/artifact.json"
    sealed = marker.stat().st_mtime_ns
    first = json.loads((pipeline / "validation/demo/metrics.json").read_text())
    result = trigger("run", "demo.yaml", cwd=pipeline)
    assert result.returncode in (0, 1), result.stderr
    assert "train-and-compress: runs/demo is up to date" in result.stdout
    assert "emit-hls: firmware/demo is up to date" in result.stdout
    assert "validate: validation/demo is up to date" in result.stdout
    assert marker.stat().st_mtime_ns == sealed, "the report was not written again"
    decision = first["decision"]
    allowed = decision["verdict"] == "undecided" and decision["allow_undecided"]
    exit_code = 0 if decision["verdict"] == "passed" or allowed else 1
    assert result.returncode == exit_code, "the same verdict decides the exit code"


@pytest.mark.slow
def test_failing_gate_exits_nonzero_and_names_the_gate(pipeline, tmp_path) -> None:
    work = tmp_path / "work"
    shutil.copytree(pipeline, work, symlinks=True)
    gates = ["max_lut=1", "max_accuracy_drop=1.0", "max_observable_distance=1.0"]
    overrides = [arg for gate in gates for arg in ("--set", f"validation.gates.{gate}")]
    overrides += ["--set", "validation.allow_undecided=true"]  # a test split of 500 jets
    result = trigger("run", "demo.yaml", *overrides, cwd=work)
    assert result.returncode == 1
    assert "emit-hls: firmware/demo is up to date" in result.stdout  # only the report changes
    assert "gate max_lut" in result.stdout and "FAILED" in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("trigger: validation gates failed: max_lut (details: ")
    gates = json.loads((work / "validation/demo/metrics.json").read_text())["gates"]
    assert gates["max_lut"]["verdict"] == "failed"
    assert gates["min_bit_exact_fraction"]["verdict"] == "passed"


def test_validate_without_artifacts_is_a_one_line_error(tmp_path) -> None:
    result = trigger("validate", "runs/none", "--firmware", "firmware/none", "--out", "v",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    expected = "runs/none not found (run `trigger train-and-compress` first)"
    assert result.stderr == f"trigger: error: {expected}\n"
    assert not (tmp_path / "v").exists()
