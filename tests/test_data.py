"""Data stage: Pythia generation in the hls4ml layout, resumption, the loader, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import synthetic_jets, write_synthetic_file
from trigger.config import CLASS_NAMES, DataConfig, QuantizerConfig
from trigger.data.generate import (
    VARIATIONS,
    GenerationSettings,
    generate,
    manifest_path,
    shard_plan,
)
from trigger.data.layout import JET_FEATURES, PARTICLE_FEATURES, OpenedJets, write_jets_file
from trigger.data.loader import (
    flattening_weights,
    load_dataset,
    load_test_split,
    read_jets,
    split_indices,
)
from trigger.errors import TriggerError
from trigger.inputs import ANGLE_LSB, PT_LSB, InputStage

TRIGGER = str(Path(sys.executable).with_name("trigger"))
TINY = GenerationSettings(jets_per_class=12, seed=5, shard_size=6)
PORT = QuantizerConfig(bits=12, integer=3)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(TINY, tmp_path_factory.mktemp("gen") / "tiny.h5", workers=2)


def with_variation(settings: GenerationSettings, name: str) -> GenerationSettings:
    """`settings` shifted by the variation `name`, as `--variation` makes them from defaults."""
    return replace(settings, variation=name, **VARIATIONS[name].settings)


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """TINY shifted by a named variation; a second call finds the file complete and returns."""
    root = tmp_path_factory.mktemp("varied")
    return lambda name: generate(with_variation(TINY, name), root / f"{name}.h5", workers=1)


def read_manifest(path: Path) -> dict:
    return json.loads(manifest_path(path).read_text())


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([TRIGGER, *args], capture_output=True, text=True, **kwargs)


# --- generation -----------------------------------------------------------------------------


@pytest.mark.slow
def test_generated_file_has_the_published_layout(generated: Path) -> None:
    with h5py.File(generated) as f:
        constituents, jets = f["jetConstituentList"][()], f["jets"][()]
        particle_names = [n.decode() for n in f["particleFeatureNames"][()]]
        jet_names = [n.decode() for n in f["jetFeatureNames"][()]]
    n = 5 * TINY.jets_per_class
    assert constituents.shape == (n, 150, 16) and constituents.dtype == np.float32
    assert jets.shape == (n, len(JET_FEATURES))
    assert particle_names == list(PARTICLE_FEATURES)
    assert jet_names[-6:] == ["j_g", "j_q", "j_w", "j_z", "j_t", "j_undef"]

    labels = jets[:, -6:-1]
    assert set(np.unique(labels)) == {0.0, 1.0}
    assert np.all(labels.sum(axis=1) == 1)
    assert np.all(labels.sum(axis=0) == TINY.jets_per_class)

    pt = constituents[..., PARTICLE_FEATURES.index("j1_pt")]
    multiplicity = jets[:, JET_FEATURES.index("j_multiplicity")]
    for jet_pt, m, particles in zip(pt, multiplicity, constituents, strict=True):
        real = int(min(m, 150))
        assert np.all(np.diff(jet_pt[:real]) <= 0), "constituents must be pT-ordered"
        assert np.all(jet_pt[:real] > 0) and np.all(particles[real:] == 0), "zero padding"
    jet_pt = jets[:, JET_FEATURES.index("j_pt")]
    assert np.all((jet_pt > TINY.pt_min) & (jet_pt < TINY.pt_max))
    assert np.all(np.abs(jets[:, JET_FEATURES.index("j_eta")]) < TINY.eta_max)
    ptrel_sum = constituents[..., PARTICLE_FEATURES.index("j1_ptrel")].sum(axis=1)
    assert np.all(ptrel_sum[multiplicity <= 150] > 0.9)


@pytest.mark.slow
def test_generated_candidates_are_l1_words_above_the_threshold(generated: Path) -> None:
    sample = read_jets(generated, n_constituents=150)
    with h5py.File(generated) as f:
        stored = f["jetConstituentList"][()]
        jets = f["jets"][()]
    real = stored[..., PARTICLE_FEATURES.index("j1_pt")] > 0
    for name, lsb in (("pt", PT_LSB), ("eta", ANGLE_LSB), ("phi", ANGLE_LSB)):
        values = stored[..., PARTICLE_FEATURES.index(f"j1_{name}")][real] / lsb
        np.testing.assert_allclose(values, np.rint(values), atol=1e-3)  # on the word grid
    assert stored[..., PARTICLE_FEATURES.index("j1_pt")][real].min() >= TINY.candidate_pt_min
    multiplicity = jets[:, JET_FEATURES.index("j_multiplicity")]
    np.testing.assert_array_equal(real.sum(axis=1), np.minimum(multiplicity, 150))
    np.testing.assert_array_equal(sample.jet[:, 3], np.minimum(multiplicity, 255))


def test_detector_thresholds_rounds_and_saturates() -> None:
    from trigger.data.generate import detector

    pt = np.array([5000.0, 0.9, 2.1, 3.0])
    eta = np.array([0.1, 0.0, 9.5, -0.3])
    phi = np.array([3.14159, 0.0, -1.0, np.pi - 1e-9])
    mass = np.array([0.0, 0.0, 0.13957, 0.0])
    pz = pt * np.sinh(eta)
    p4 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pz, np.sqrt(pt**2 + pz**2 + mass**2)], -1)
    (out,) = detector([p4], pt_min=1.0)
    assert len(out) == 3  # 0.9 GeV dropped
    out_pt = np.hypot(out[:, 0], out[:, 1])
    np.testing.assert_allclose(out_pt, [4095.75, 2.0, 3.0])  # saturated; 2.1 rounds to 2.0
    out_eta = np.arcsinh(out[:, 2] / out_pt)
    np.testing.assert_allclose(out_eta / ANGLE_LSB, [23, 2047, -69], atol=1e-6)
    out_phi = np.arctan2(out[:, 1], out[:, 0])
    np.testing.assert_allclose(np.abs(out_phi) / ANGLE_LSB, [720, 229, 720], atol=1e-6)
    mass_out = np.sqrt(np.maximum(out[:, 3] ** 2 - (out[:, :3] ** 2).sum(1), 0))
    np.testing.assert_allclose(mass_out, [0.0, 0.13957, 0.0], atol=1e-3)


@pytest.mark.slow
def test_parton_window_generates_around_the_hard_process_pt(tmp_path: Path) -> None:
    settings = GenerationSettings(
        jets_per_class=4, seed=2, shard_size=4, window="parton", pt_min=990, pt_max=1010
    )
    out = generate(settings, tmp_path / "parton.h5", workers=2)
    manifest = json.loads(manifest_path(out).read_text())
    assert manifest["settings"]["window"] == "parton" and "parton" in manifest["window"]
    assert "threshold" in manifest["detector"]
    jet_pt = read_jets(out, 1).observables["pt"]
    assert len(jet_pt) == 20 and 700 < np.median(jet_pt) < 1100


@pytest.mark.slow
def test_manifest_records_settings_seeds_versions_counts(generated: Path) -> None:
    manifest = json.loads(manifest_path(generated).read_text())
    assert manifest["settings"]["seed"] == TINY.seed
    assert manifest["counts"] == {c: TINY.jets_per_class for c in CLASS_NAMES}
    assert len({s["seed"] for s in manifest["shards"]}) == len(shard_plan(TINY))
    assert {"pythia8mc", "fastjet", "numpy"} <= set(manifest["versions"])


@pytest.mark.slow
def test_same_seed_gives_identical_bytes_whatever_the_workers(generated: Path, tmp_path) -> None:
    again = generate(TINY, tmp_path / "again.h5", workers=1)
    assert again.read_bytes() == generated.read_bytes()
    assert manifest_path(again).read_bytes() == manifest_path(generated).read_bytes()
    other_seed = GenerationSettings(jets_per_class=2, seed=6, shard_size=6)
    other = generate(other_seed, tmp_path / "other.h5", workers=2)
    with h5py.File(other) as f, h5py.File(generated) as g:
        assert not np.array_equal(f["jets"][:2], g["jets"][:2])


@pytest.mark.slow
def test_dask_local_cluster_writes_the_same_bytes(generated: Path, tmp_path) -> None:
    from trigger.cluster import ClusterConfig, dask_client

    with dask_client(ClusterConfig(workers=2), log=lambda _: None) as client:
        on_dask = generate(TINY, tmp_path / "dask.h5", client=client)
    assert on_dask.read_bytes() == generated.read_bytes()
    assert manifest_path(on_dask).read_bytes() == manifest_path(generated).read_bytes()


def test_shards_get_distinct_seeds_and_cover_every_jet() -> None:
    plan = shard_plan(GenerationSettings(jets_per_class=1001, seed=1, shard_size=250))
    assert len({s.seed for s in plan}) == len(plan)
    for label in range(5):
        assert sum(s.n_jets for s in plan if s.label == label) == 1001


@pytest.mark.slow
def test_interrupted_run_resumes_without_losing_or_duplicating_jets(generated, tmp_path) -> None:
    out = tmp_path / "resumed.h5"
    args = ["data", "generate", "--out", str(out), "--jets-per-class", "12", "--seed", "5",
            "--shard-size", "6", "--workers", "1"]  # fmt: skip
    process = subprocess.Popen([TRIGGER, *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    shard_dir = tmp_path / "resumed.h5.shards"
    deadline = time.monotonic() + 120
    while not list(shard_dir.glob("*.npz")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    kept = list(shard_dir.glob("*.npz"))
    assert 1 <= len(kept) < len(shard_plan(TINY)), "the run should have been cut mid-way"
    assert not out.exists(), "no final file from an interrupted run"

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == generated.read_bytes()
    assert not shard_dir.exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIATIONS))
def test_a_variation_changes_what_it_names_and_nothing_else(generated, varied, name) -> None:
    shift = VARIATIONS[name]
    nominal, shifted = read_manifest(generated), read_manifest(varied(name))
    assert shifted["variation"] == {
        "name": name,
        "description": shift.description,
        "pythia": list(shift.pythia),
        "settings": dict(shift.settings),
    }
    assert shifted["settings"] == nominal["settings"] | dict(shift.settings) | {"variation": name}
    assert shifted["processes"] == {
        c: p + list(shift.pythia) for c, p in nominal["processes"].items()
    }
    # A nominal manifest names no variation at all.
    assert "variation" not in nominal and "variation" not in nominal["settings"]
    unshifted = set(nominal) - {"settings", "processes"}
    assert set(shifted) - set(nominal) == {"variation"}
    assert {k: shifted[k] for k in unshifted} == {k: nominal[k] for k in unshifted}
    with h5py.File(generated) as f, h5py.File(varied(name)) as g:
        assert g["jets"].shape == f["jets"].shape
        assert not np.array_equal(g["jets"][()], f["jets"][()]), "same seed, other jets"


@pytest.mark.slow
def test_a_variation_is_reproducible(varied, tmp_path) -> None:
    again = generate(with_variation(TINY, "tune-a14"), tmp_path / "again.h5", workers=1)
    assert again.read_bytes() == varied("tune-a14").read_bytes()


def _soft_wide_candidates(path: Path) -> float:
    """Mean count per jet of candidates below 3 GeV more than 0.5 from the jet axis."""
    with h5py.File(path) as f:
        constituents = f["jetConstituentList"][()]
    pt = constituents[..., PARTICLE_FEATURES.index("j1_pt")]
    delta_r = constituents[..., PARTICLE_FEATURES.index("j1_deltaR")]
    return float(((pt > 0) & (pt < 3) & (delta_r > 0.5)).sum(axis=1).mean())


@pytest.mark.slow
def test_ue_off_removes_soft_wide_angle_candidates(tmp_path) -> None:
    # The underlying event is soft and spread evenly: above the 1 GeV threshold it adds about
    # one candidate to a jet of ~45, lost in the noise of a few dozen jets. Without the
    # threshold, away from the axis, it is a third of the candidates.
    settings = GenerationSettings(jets_per_class=40, seed=5, shard_size=40, candidate_pt_min=0)
    with_ue = generate(settings, tmp_path / "nominal.h5", workers=1)
    without = generate(with_variation(settings, "ue-off"), tmp_path / "ue_off.h5", workers=1)
    assert _soft_wide_candidates(without) < 0.8 * _soft_wide_candidates(with_ue)


@pytest.mark.slow
def test_threshold_up_leaves_no_candidate_below_the_raised_threshold(generated, varied) -> None:
    def candidate_pt(path: Path) -> np.ndarray:
        with h5py.File(path) as f:
            pt = f["jetConstituentList"][..., PARTICLE_FEATURES.index("j1_pt")]
        return pt[pt > 0]

    threshold = VARIATIONS["threshold-up"].settings["candidate_pt_min"]
    assert candidate_pt(generated).min() < threshold
    assert candidate_pt(varied("threshold-up")).min() >= threshold


@pytest.mark.slow
def test_window_up_moves_the_jet_pt_window(generated, varied) -> None:
    shift = VARIATIONS["window-up"].settings
    jet_pt = read_jets(varied("window-up"), 1).observables["pt"]
    assert np.all((jet_pt > shift["pt_min"]) & (jet_pt < shift["pt_max"]))
    assert jet_pt.max() > TINY.pt_max, "the window moved up, not only narrowed"
    assert read_jets(generated, 1).observables["pt"].min() < shift["pt_min"]


@pytest.mark.slow
def test_cli_variation_replaces_defaults_and_accepts_its_own_values(tmp_path) -> None:
    out = tmp_path / "window_up.h5"
    result = run_cli("data", "generate", "--out", str(out), "--jets-per-class", "2", "--seed", "5",
                     "--workers", "1", "--variation", "window-up", "--pt-min", "900")  # fmt: skip
    assert result.returncode == 0, result.stderr
    settings = read_manifest(out)["settings"]
    assert (settings["pt_min"], settings["pt_max"]) == (900.0, 1300.0)
    assert settings["variation"] == "window-up"


def test_generate_help_names_every_variation() -> None:
    help_text = " ".join(run_cli("data", "generate", "--help").stdout.split())
    assert all(name in help_text for name in VARIATIONS)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--window", "parton", "--candidate-pt-min", "-1"], "--candidate-pt-min"),
        (["--pt-min", "900", "--pt-max", "800"], "pT window"),
        (["--variation", "ue-on"], "unknown --variation 'ue-on': choose one of ue-off,"),
        (["--variation", "window-up", "--pt-min", "850"], "window-up sets --pt-min to 900.0"),
        (["--variation", "window-up", "--window", "parton"], "window-up sets --window to jet"),
    ],
)
def test_generation_rejects_bad_settings(tmp_path, options, message) -> None:
    result = run_cli("data", "generate", "--out", str(tmp_path / "x.h5"), *options)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert not (tmp_path / "x.h5").exists()


def test_generation_rejects_an_inverted_window(tmp_path) -> None:
    result = run_cli("data", "generate", "--out", str(tmp_path / "x.h5"), "--pt-min", "900",
                     "--pt-max", "800")  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "pT window" in result.stderr
    assert not (tmp_path / "x.h5").exists()


# --- inspect --------------------------------------------------------------------------------


def test_inspect_table_json_and_plot(synthetic_data: Path, tmp_path: Path) -> None:
    result = run_cli("data", "inspect", str(synthetic_data), "--json", "--plot",
                     str(tmp_path / "p.png"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert list(summary) == list(CLASS_NAMES)
    assert all(row["jets"] == 300 for row in summary.values())
    assert summary["t"]["mean_multiplicity"] > summary["g"]["mean_multiplicity"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    table = run_cli("data", "inspect", str(synthetic_data))
    assert table.returncode == 0 and "soft-drop" in table.stdout


# --- loader ---------------------------------------------------------------------------------


def test_loader_reads_the_layout_as_l1_words(synthetic_data: Path) -> None:
    sample = read_jets(synthetic_data, n_constituents=8)
    constituents, jets = synthetic_jets(300)
    assert sample.candidates.shape == (1500, 8, 3) and sample.jet.shape == (1500, 4)
    col = {name: PARTICLE_FEATURES.index(f"j1_{name}") for name in ("pt", "eta", "phi")}
    np.testing.assert_array_equal(
        sample.candidates[..., 0], np.rint(constituents[:, :8, col["pt"]] / PT_LSB)
    )
    np.testing.assert_array_equal(
        sample.candidates[..., 2], np.rint(constituents[:, :8, col["phi"]] / ANGLE_LSB)
    )
    np.testing.assert_array_equal(sample.jet[:, 3], jets[:, JET_FEATURES.index("j_multiplicity")])
    np.testing.assert_array_equal(sample.y, jets[:, -6:-1])
    assert set(sample.observables) >= {"pt", "eta", "mass", "mass_mmdt", "multiplicity"}


def test_loader_concatenates_files_and_limits(tmp_path: Path) -> None:
    a = write_synthetic_file(tmp_path / "a.h5", 10, seed=1)
    b = write_synthetic_file(tmp_path / "b.h5", 10, seed=2)
    both = read_jets([a, b], 4)
    assert len(both) == 100
    assert len(read_jets([a, b], 4, limit=30)) == 30


def test_dataset_splits_are_deterministic_disjoint_and_normalised(synthetic_data: Path) -> None:
    config = DataConfig(path=str(synthetic_data), n_constituents=16, split=(0.6, 0.2, 0.2))
    first, second = load_dataset(config, PORT), load_dataset(config, PORT)
    np.testing.assert_array_equal(first.test.x, second.test.x)
    parts = split_indices(1500, config.split, config.split_seed)
    assert sorted(np.concatenate(parts).tolist()) == list(range(1500))
    assert [len(p) for p in parts] == [900, 300, 300]

    x = first.train.x
    real = ~np.all(x == 0, axis=-1)
    np.testing.assert_allclose(x[real].mean(axis=0), 0, atol=0.1)
    assert np.all((x[real].std(axis=0) > 0.5) & (x[real].std(axis=0) < 2))  # a power-of-two scale
    assert np.all(np.abs(x) <= 2**PORT.integer)
    assert first.input_stage.n_constituents == 16
    assert first.input_stage.features == config.features


def test_flattening_weights_equalise_class_pt_spectra(tmp_path: Path) -> None:
    constituents, jets = synthetic_jets(400, seed=3)
    pt_col = JET_FEATURES.index("j_pt")
    gluons = jets[:, JET_FEATURES.index("j_g")] == 1
    # Gluons: a much steeper spectrum over the same window.
    jets[gluons, pt_col] = 800 + 400 * ((jets[gluons, pt_col] - 800) / 400) ** 4
    write_jets_file(tmp_path / "skewed.h5", constituents, jets)
    sample = read_jets(tmp_path / "skewed.h5", 1)
    weights = flattening_weights(sample)
    pt, labels = sample.observables["pt"], sample.labels
    raw_gap = abs(pt[labels == 0].mean() - pt[labels == 2].mean())
    weighted = [np.average(pt[labels == c], weights=weights[labels == c]) for c in (0, 2)]
    assert abs(weighted[0] - weighted[1]) < 0.25 * raw_gap


# --- bad input ------------------------------------------------------------------------------


def _broken(tmp_path: Path, kind: str) -> Path:
    constituents, jets = synthetic_jets(4)
    path = tmp_path / f"{kind}.h5"
    if kind == "nan":
        constituents[3, 0, 6] = np.nan
        write_jets_file(path, constituents, jets)
    elif kind == "wrong_shape":
        write_jets_file(path, constituents[:, :, :10], jets)
    elif kind == "missing_key":
        write_jets_file(path, constituents, jets)
        with h5py.File(path, "a") as f:
            del f["jets"]
    elif kind == "not_hdf5":
        path.write_text("not a file of jets")
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "data file not found"),
        ("missing_key", "missing HDF5 key 'jets'"),
        ("wrong_shape", "has shape (20, 150, 10)"),
        ("nan", "NaN"),
        ("not_hdf5", "not an HDF5 file"),
    ],
)
def test_bad_input_gives_one_line_error_and_nonzero_exit(tmp_path, kind, message) -> None:
    path = _broken(tmp_path, kind)
    result = run_cli("data", "inspect", str(path))
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(TriggerError, match=re.escape(message)):
        read_jets(path, 4)


def test_train_jets_shrinks_only_the_training_split(synthetic_data: Path) -> None:
    whole = load_dataset(DataConfig(path=str(synthetic_data)), PORT)
    small = load_dataset(DataConfig(path=str(synthetic_data), train_jets=100), PORT)
    assert len(small.train) == 100 < len(whole.train)
    assert np.array_equal(small.train.y, whole.train.y[:100])
    for split in ("validation", "test"):
        assert np.array_equal(getattr(small, split).jet, getattr(whole, split).jet)


def test_test_split_with_saved_input_stage_matches_training_time(synthetic_data, tmp_path):
    config = DataConfig(path=str(synthetic_data), n_constituents=16)
    dataset = load_dataset(config, PORT)
    dataset.input_stage.save(tmp_path / "input_stage.json")
    saved = InputStage.load(tmp_path / "input_stage.json")
    # A different N in the recipe must not matter: the saved contract decides.
    test = load_test_split(config.model_copy(update={"n_constituents": 8}), saved)
    np.testing.assert_array_equal(test.x, dataset.test.x)
    np.testing.assert_array_equal(test.y, dataset.test.y)


def test_a_file_being_written_is_reported_as_locked(tmp_path) -> None:
    path = tmp_path / "growing.h5"
    script = f"import h5py, time\nf = h5py.File({str(path)!r}, 'w')\nprint('open', flush=True)\n"
    with subprocess.Popen([sys.executable, "-c", script + "time.sleep(60)"],
                          stdout=subprocess.PIPE, text=True) as writer:  # fmt: skip
        try:
            assert writer.stdout.readline().strip() == "open"
            with pytest.raises(TriggerError, match="locked by another process, which is writ"):
                OpenedJets(path)
        finally:
            writer.kill()
