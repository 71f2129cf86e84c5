"""`trigger sweep`: trials on a Dask LocalCluster, resumption, failures, Pareto and scaling fits,
batch job scripts, bad sweep files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from tests.conftest import write_synthetic_file
from trigger.cluster import ClusterConfig, job_script
from trigger.errors import TriggerError
from trigger.sweep import Points, fit_scaling, load_sweep, non_dominated, sweep
from trigger.sweep.scaling import scaling_law

TRIGGER = str(Path(sys.executable).with_name("trigger"))
# Small and quick on the toy data: one epoch, a few hundred weights, QAT only.
BASE = {
    "data": {"n_constituents": 8},
    "architecture": {"phi": [8], "rho": [8]},
    "pruning": {"enabled": False},
    "distillation": {"enabled": False},
    "training": {"epochs": 1, "batch_size": 64, "learning_rate": 0.01},
}


def write_sweep(folder: Path, **fields) -> Path:
    """A sweep file over the toy data, with `fields` laid over a 4-point grid."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(BASE))
    if not (folder / "toy.h5").exists():
        write_synthetic_file(folder / "toy.h5", 100)
    tree = {
        "recipe": "base.yaml",
        "data": "toy.h5",
        "space": {
            "quantization.default.weight.bits": {"choices": [4, 8]},
            "architecture.phi": {"choices": [[4], [8]]},
        },
        "objectives": ["accuracy", "lut"],
        "trials": 4,
        "sampler": "grid",
        "cluster": {"workers": 2},
    } | fields
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def read_trials(out: Path) -> list[dict[str, str]]:
    with (out / "trials.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def client():
    from trigger.cluster import dask_client

    with dask_client(ClusterConfig(workers=2), log=lambda _: None) as running:
        yield running


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([TRIGGER, *args], capture_output=True, text=True, **kwargs)


def run_sweep_file(path: Path, out: Path, client) -> dict:
    spec, _ = load_sweep(path)
    return sweep(spec, out, spec.data, client, log=lambda _: None)


# --- the Pareto filter and the scaling fit --------------------------------------------------


def test_pareto_filter_keeps_exactly_the_non_dominated_points() -> None:
    # (accuracy up, LUT down)
    points = np.array(
        [
            [0.60, 1000],  # front: cheapest
            [0.70, 3000],  # front
            [0.65, 3000],  # dominated by the one above (same cost, less accurate)
            [0.60, 2000],  # dominated by the first
            [0.75, 9000],  # front: most accurate
            [0.70, 3000],  # a tie with a front point: neither dominates the other
        ]
    )
    keep = non_dominated(points, ["maximize", "minimize"])
    assert keep.tolist() == [True, True, False, False, True, True]
    assert non_dominated(points[:, :1], ["maximize"]).tolist() == [
        False, False, False, False, True, False
    ]  # fmt: skip
    three = np.array([[1, 1, 1], [2, 0, 1], [0, 0, 0], [1, 1, 2]])
    assert non_dominated(three, ["minimize"] * 3).tolist() == [False, False, True, False]


def test_scaling_fit_recovers_known_exponents() -> None:
    truth = {"a": 0.20, "alpha": 0.6, "b": 0.30, "beta": 0.4, "c": 0.25}
    n, p = (g.ravel() for g in np.meshgrid([3e3, 1e4, 3e4, 1e5, 3e5], [200, 800, 3000, 12000]))
    error = scaling_law(n / n.min(), p / p.min(), **truth)
    sigma = np.full_like(error, 1e-3)
    noisy = error + np.random.default_rng(3).normal(0, 1e-3, len(error))
    fit = fit_scaling(Points(n, p, noisy, sigma))
    assert fit["valid"]
    for name, value in truth.items():
        assert abs(fit["values"][name] - value) < 4 * fit["errors"][name] + 0.02, name
    assert fit["chi2"] / fit["ndof"] < 3
    with pytest.raises(TriggerError, match="more than 5 points"):
        fit_scaling(Points(n[:5], p[:5], noisy[:5], sigma[:5]))


# --- sweeps on a LocalCluster ---------------------------------------------------------------


@pytest.mark.slow
def test_four_trial_sweep_writes_its_outputs(client, tmp_path: Path) -> None:
    path = write_sweep(tmp_path, references=["base.yaml"])
    out = tmp_path / "out"
    summary = run_sweep_file(path, out, client)
    assert summary["trials"] == {"complete": 4, "fail": 0}
    rows = read_trials(out)
    grid = {(r["quantization.default.weight.bits"], r["architecture.phi"]) for r in rows}
    assert len(rows) == 4 and grid == {("4", "[4]"), ("4", "[8]"), ("8", "[4]"), ("8", "[8]")}
    assert all(r["state"] == "complete" and float(r["lut"]) > 0 for r in rows)
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["front"], "a front has at least one member"
    for member in pareto["front"]:
        directory = out / "trials" / f"{member['number']:04d}"
        assert (directory / "run" / "student.h5").is_file()
        assert member["figures"]["lut"] > 0 and 0 <= member["figures"]["accuracy"] <= 1
    assert pareto["references"]["base"]["lut"] > 0

    member = pareto["front"][0]
    recipe = tmp_path / "front.yaml"
    result = run_cli("recipe", "from-trial", str(out / "trials" / f"{member['number']:04d}"),
                     "--out", str(recipe))  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load(recipe.read_text())
    assert written["architecture"]["phi"] == member["params"]["architecture.phi"]
    assert written["training"]["epochs"] == 1, "the base recipe's own settings are kept"
    again = run_cli("recipe", "from-trial", str(out / "trials" / "0000"), "--out", str(recipe))
    assert again.returncode == 2 and "pass --force" in again.stderr
    forced = ("recipe", "from-trial", str(out / "trials" / "0000"), "--out", str(recipe), "--force")
    assert run_cli(*forced).returncode == 0
    assert yaml.safe_load(recipe.read_text())["name"].endswith("-0000")
    mine = tmp_path / "mine.yaml"
    mine.write_text("name: mine\n")
    result = run_cli("recipe", "from-trial", str(out / "trials" / "0000"), "--out", str(mine),
                     "--force")  # fmt: skip
    assert result.returncode == 2 and "did not write it" in result.stderr
    assert mine.read_text() == "name: mine\n"


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_sweep_completes(client, tmp_path: Path) -> None:
    # Mean pooling divides exactly only by a power of two: 12 candidates is refused in the trial.
    space = {"data.n_constituents": {"choices": [8, 12]}, "architecture.phi": {"choices": [[4]]}}
    out = tmp_path / "out"
    summary = run_sweep_file(write_sweep(tmp_path, space=space, trials=2), out, client)
    assert summary["trials"] == {"complete": 1, "fail": 1}
    rows = {r["data.n_constituents"]: r for r in read_trials(out)}
    assert rows["12"]["state"] == "fail"
    assert "mean pooling over 12 constituents" in rows["12"]["error"]
    assert rows["8"]["state"] == "complete" and not rows["8"]["error"]


@pytest.mark.slow
def test_a_repeated_proposal_is_not_trained_again(client, tmp_path: Path) -> None:
    # Seeded so that the random sampler's first two proposals are the same point.
    space = {"quantization.default.weight.bits": {"choices": [4, 8]}}
    path = write_sweep(tmp_path, space=space, trials=2, sampler="random", seed=1)
    summary = run_sweep_file(path, tmp_path / "out", client)
    assert summary["trials"] == {"complete": 2, "fail": 0}
    bits = sorted(r["quantization.default.weight.bits"] for r in read_trials(tmp_path / "out"))
    assert bits == ["4", "8"]


@pytest.mark.slow
def test_killed_sweep_resumes_without_repeating_a_trial(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, cluster={"workers": 1})
    out = tmp_path / "out"
    args = ["sweep", str(path), "--out", str(out)]
    process = subprocess.Popen([TRIGGER, *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while not list(out.glob("trials/*/figures.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    # As Ctrl-C or a batch system's kill does: the whole process group, workers included.
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=120) != 0
    _wait_until_gone(process.pid)
    finished = {f.parent.name: f.stat().st_mtime_ns for f in out.glob("trials/*/figures.json")}
    assert 1 <= len(finished) < 4, f"the sweep should have been cut mid-way: {sorted(finished)}"

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "4 completed, 0 failed" in result.stdout, result.stdout + result.stderr
    after = {f.parent.name: f.stat().st_mtime_ns for f in out.glob("trials/*/figures.json")}
    assert sorted(after) == ["0000", "0001", "0002", "0003"], "no trial beyond the budget"
    assert all(after[name] == mtime for name, mtime in finished.items()), "a trial was rerun"
    params = [json.loads((out / "trials" / n / "trial.json").read_text())["params"] for n in after]
    assert len({json.dumps(p, sort_keys=True) for p in params}) == 4


def _wait_until_gone(group: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(group, signal.SIGKILL)


# --- batch clusters, without submitting -----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("slurm", ["#SBATCH -p short", "#SBATCH -A cms", "#SBATCH --cpus-per-task=4",
                   "#SBATCH --mem=15G", "#SBATCH -t 02:00:00", "#SBATCH --constraint=avx2",
                   "--nworkers 4", "--nthreads 1", "export TF_NUM_INTRAOP_THREADS=1"]),
        ("htcondor", ["MY.DaskWorkerCores = 4", "MY.DaskWorkerMemory = 16000000000",
                      "+MaxRuntime = 7200", "requirements = (OpSysMajorVer == 9)",
                      "--nworkers 4", "--nthreads 1", "export TF_NUM_INTRAOP_THREADS=1"]),
    ],
)  # fmt: skip
def test_batch_job_scripts_carry_the_configured_resources(kind: str, expected: list[str]) -> None:
    extra = "requirements=(OpSysMajorVer == 9)" if kind == "htcondor" else "--constraint=avx2"
    config = ClusterConfig(kind=kind, cores=4, memory="16GB", walltime="02:00:00",
                           queue="short", account="cms", job_extra=(extra,))  # fmt: skip
    script = job_script(config)
    for line in expected:
        assert line in script, f"{kind}: {line!r} missing from\n{script}"


def test_job_script_from_the_command_line(tmp_path: Path) -> None:
    cluster = {"kind": "slurm", "cores": 8, "memory": "32GB", "walltime": "01:00:00"}
    result = run_cli("sweep", str(write_sweep(tmp_path, cluster=cluster)), "--job-script")
    assert result.returncode == 0, result.stderr
    assert "#SBATCH --cpus-per-task=8" in result.stdout and "#SBATCH -t 01:00:00" in result.stdout


# --- bad input: one line, exit 2, before any trial ------------------------------------------


@pytest.mark.parametrize(
    ("fields", "options", "message"),
    [
        ({"space": {"training.epoch": {"choices": [1]}}}, [],
         "unknown recipe field 'training.epoch'"),
        ({"space": {"pruning.target_sparsity": {"low": 0.8, "high": 0.2}}}, [],
         "empty range: low (0.8) is above high (0.2)"),
        ({"space": {"architecture.phi": {"choices": []}}}, [], "choices is empty"),
        ({"fixed": {"distilation.enabled": False}}, [], "unknown recipe field 'distilation"),
        ({}, ["--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler"),
        ({"cluster": {"kind": "slurm", "cores": 4}}, [], "cluster.memory must be set"),
        ({"sampler": "grid", "space": {"training.learning_rate": {"low": 0.001, "high": 0.1}}},
         [], "the grid sampler needs choices or a step"),
        ({"space": {"quantization.default.weight.bits": {"choices": [0, 8]}}}, [],
         "space.quantization.default.weight.bits: the recipe refuses 0"),
        ({"space": {"training.epochs": {"low": 0, "high": 2, "step": 1}}}, [],
         "space.training.epochs: the recipe refuses 0"),
        ({"data": "not_jets.h5"}, [], "not_jets.h5: missing HDF5 key"),
    ],
)  # fmt: skip
def test_bad_sweep_is_one_line_and_exit_2_before_any_trial(tmp_path, fields, options, message):
    out = tmp_path / "out"
    with h5py.File(tmp_path / "not_jets.h5", "w") as f:
        f["numbers"] = np.arange(4)
    result = run_cli("sweep", str(write_sweep(tmp_path, **fields)), "--out", str(out), *options)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists(), "nothing is written before the sweep is known to be sound"


@pytest.mark.slow
def test_a_sweep_whose_every_trial_failed_exits_nonzero(tmp_path) -> None:
    # Each value is valid alone; together with mean pooling, 12 candidates are not.
    space = {"data.n_constituents": {"choices": [12]}, "architecture.phi": {"choices": [[4]]}}
    out = tmp_path / "out"
    sweep_file = write_sweep(tmp_path, space=space, trials=1, cluster={"workers": 1})
    result = run_cli("sweep", str(sweep_file), "--out", str(out))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("trigger: every trial of the sweep failed") and "error.txt" in last
    assert read_trials(out)[0]["state"] == "fail"


@pytest.mark.slow
def test_local_workers_run_tensorflow_on_one_thread(client) -> None:
    def threads() -> tuple[int, str, int]:
        import os

        import tensorflow as tf

        from trigger.sweep.trial import _one_thread

        _one_thread()
        intra = tf.config.threading.get_intra_op_parallelism_threads()
        return len(os.sched_getaffinity(0)), os.environ["OMP_NUM_THREADS"], intra

    assert len(client.nthreads()) == 2 and set(client.nthreads().values()) == {1}
    _, omp, intra = client.submit(threads, pure=False).result()
    assert (omp, intra) == ("1", 1)


def load_shipped_sweep(name: str, tmp_path: Path):
    """models/sweeps/NAME.yaml with its data file replaced by a stand-in: (spec, base recipe,
    the file's tree)."""
    shipped = Path(__file__).resolve().parents[1] / "models" / "sweeps" / f"{name}.yaml"
    tree = yaml.safe_load(shipped.read_text())
    (tmp_path / "jets.h5").touch()
    tree["data"] = str(tmp_path / "jets.h5")
    tree["recipe"] = str((shipped.parent / tree["recipe"]).resolve())
    tree["references"] = [str((shipped.parent / r).resolve()) for r in tree["references"]]
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(tree))
    return (*load_sweep(tmp_path / f"{name}.yaml"), tree)


def test_context_sweep_file_loads_and_every_architecture_it_draws_is_a_valid_recipe(
    tmp_path: Path,
) -> None:
    """models/sweeps/context.yaml (its data file replaced by a stand-in): every combination of
    phi, context blocks and candidate count it can draw passes the recipe's cross checks."""
    import itertools

    from trigger.config import load_recipe

    spec, base, tree = load_shipped_sweep("context", tmp_path)
    assert base.architecture.kind == "context"
    space = {k: spec.space[k].grid() for k in tree["space"] if k.startswith(("arch", "data"))}
    for values in itertools.product(*space.values()):
        params = dict(zip(space, values, strict=True))
        sets = [f"{k}={json.dumps(v)}" for k, v in params.items()]
        assert load_recipe(spec.recipe, sets).architecture.kind == "context"
