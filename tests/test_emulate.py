"""`trigger emulate` on what a trigger sees: files without labels, files that declare jets
they do not hold, runs that are stopped; and the emulators' loading (compilers that stop with
the command, the fast engine without TensorFlow).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import synthetic_jets
from trigger.data.layout import (
    CONSTITUENTS_KEY,
    JET_FEATURES,
    JET_NAMES_KEY,
    JET_OBSERVABLES,
    JETS_KEY,
    PARTICLE_FEATURES,
    PARTICLE_NAMES_KEY,
    write_jets_file,
)

TRIGGER = str(Path(sys.executable).with_name("trigger"))
N = 16  # candidates the test firmware takes


def trigger(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TRIGGER, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def write_layout(path: Path, constituents: np.ndarray, jets: np.ndarray, jet_names) -> Path:
    """A file in the hls4ml layout with the jet columns `jet_names` (e.g. without labels)."""
    with h5py.File(path, "w") as f:
        f.create_dataset(CONSTITUENTS_KEY, data=constituents)
        f.create_dataset(JETS_KEY, data=jets)
        f.create_dataset(PARTICLE_NAMES_KEY, data=np.array(PARTICLE_FEATURES, dtype="S"))
        f.create_dataset(JET_NAMES_KEY, data=np.array(jet_names, dtype="S"))
    return path


def write_declaring_more(path: Path, declared: int, written: int, chunked: bool) -> Path:
    """A layout file whose datasets declare `declared` jets of which `written` were written:
    HDF5 reads the rest as zeros (a sparse file, or chunks never allocated)."""
    constituents, jets = synthetic_jets(1, max_particles=N)
    with h5py.File(path, "w") as f:
        for key, rows in ((CONSTITUENTS_KEY, constituents), (JETS_KEY, jets)):
            chunks = (1000, *rows.shape[1:]) if chunked else None
            dataset = f.create_dataset(key, (declared, *rows.shape[1:]), "f4", chunks=chunks)
            dataset[:written] = rows[:written]
        f.create_dataset(PARTICLE_NAMES_KEY, data=np.array(PARTICLE_FEATURES, dtype="S"))
        f.create_dataset(JET_NAMES_KEY, data=np.array(JET_FEATURES, dtype="S"))
    return path


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sealed firmware directory of a random 16-candidate student behind an input stage
    fitted on toy jets, with what emit-hls writes for the emulators: the project and its C++
    emulator, the fast emulator's arithmetic, the student, its input stage and settings, and
    its proof of exactness on the toy test jets (emulation.json)."""
    from tests.test_hls import _save, make_recipe, random_student
    from trigger.artifacts import EMIT, seal
    from trigger.data.loader import load_dataset
    from trigger.hls import emulate
    from trigger.hls.stage import (
        compare,
        exact_reference,
        failed_checks,
        prove_with_testbench,
        write_project,
    )
    from trigger.io import write_json

    work = tmp_path_factory.mktemp("emulate")
    data = work / "toy.h5"
    write_jets_file(data, *synthetic_jets(40, seed=1, max_particles=N))
    recipe = make_recipe("deepsets_n16_8bit", data)
    dataset = load_dataset(recipe.data, recipe.quantization.input)
    stage, test = dataset.input_stage, dataset.test
    project = work / "fw"
    student = random_student(recipe)
    _, plan = write_project(student, stage, project, recipe.firmware)
    expected, reference = exact_reference(student, plan, stage, test)
    proof = compare(emulate(project, test.words), expected) | {"reference": reference}
    proof["testbench"] = prove_with_testbench(project, test, expected)
    proof["failed_checks"] = failed_checks(proof)
    assert not proof["failed_checks"], proof
    write_json(project / "emulation.json", proof)
    _save(student, project / "student.h5")
    stage.save(project / "input_stage.json")
    write_json(project / "conversion.json", {"firmware": recipe.firmware.model_dump(mode="json")})
    seal(project, EMIT, {})
    return project


def hls_logits(firmware: Path, data: Path) -> np.ndarray:
    """The HLS C++ emulator on every jet of a labelled file: the reference."""
    from trigger.data.loader import read_jets
    from trigger.hls import emulate

    return emulate(firmware, read_jets(data, N).words)


def predictions(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["logits"][()]


@pytest.mark.slow
def test_emulate_runs_on_a_file_without_labels(firmware: Path, tmp_path: Path) -> None:
    constituents, jets = synthetic_jets(30, seed=2, max_particles=N)
    labelled = tmp_path / "labelled.h5"
    write_jets_file(labelled, constituents, jets)
    unlabelled = write_layout(
        tmp_path / "unlabelled.h5", constituents, jets[:, : len(JET_OBSERVABLES)], JET_OBSERVABLES
    )
    for engine in ("fast", "hls"):
        out = tmp_path / f"{engine}.h5"
        args = ["emulate", str(firmware), "--data", str(unlabelled), "--out", str(out)]
        result = trigger(*args, "--engine", engine, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        np.testing.assert_array_equal(predictions(out), hls_logits(firmware, labelled))


@pytest.mark.slow
def test_emulate_reads_only_the_candidates_and_columns_the_firmware_takes(
    firmware: Path, tmp_path: Path
) -> None:
    """Values the words are not made of (other particle features, candidates past the N the
    firmware takes) are not read: not even a NaN there stops the emulation."""
    constituents, jets = synthetic_jets(30, seed=3, max_particles=2 * N)
    clean = tmp_path / "clean.h5"
    write_jets_file(clean, constituents, jets)
    constituents[:, :, PARTICLE_FEATURES.index("j1_costheta")] = np.nan
    constituents[:, N:, :] = np.inf
    odd = tmp_path / "odd.h5"
    write_jets_file(odd, constituents, jets)
    out = tmp_path / "p.h5"
    result = trigger("emulate", str(firmware), "--data", str(odd), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(predictions(out), hls_logits(firmware, clean))


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True], ids=["contiguous", "chunked"])
def test_emulate_refuses_a_file_declaring_jets_it_does_not_hold(
    firmware: Path, tmp_path: Path, chunked: bool
) -> None:
    data = write_declaring_more(tmp_path / "sparse.h5", 10**8, 5, chunked)
    out = tmp_path / "p.h5"
    result = trigger("emulate", str(firmware), "--data", str(data), "--out", str(out),
                     cwd=tmp_path, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"trigger: error: {data}: 'jetConstituentList' declares ")
    assert "100,000,000 jets but holds data for at most " in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sparse.h5"]


def _temporaries(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}.tmp-*"))


def _start_slow_emulation(firmware: Path, data: Path, out: Path) -> subprocess.Popen:
    """`trigger emulate` one jet per chunk, returned once its temporary output exists."""
    args = ["emulate", str(firmware), "--data", str(data), "--out", str(out), "--chunk-jets", "1"]
    child = subprocess.Popen([TRIGGER, *args], cwd=out.parent)
    deadline = time.monotonic() + 120
    while not _temporaries(out):
        assert child.poll() is None, f"trigger emulate exited ({child.returncode})"
        assert time.monotonic() < deadline, "the emulation never started writing"
        time.sleep(0.05)
    return child


@pytest.mark.slow
def test_a_stopped_emulation_leaves_no_temporary(firmware: Path, tmp_path: Path) -> None:
    """SIGTERM: the temporary goes with the command. SIGKILL: the next run removes it, even
    one refused for bad input."""
    data = tmp_path / "jets.h5"
    write_jets_file(data, *synthetic_jets(4000, seed=4, max_particles=N))
    out = tmp_path / "p.h5"
    child = _start_slow_emulation(firmware, data, out)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 143
    assert _temporaries(out) == [] and not out.exists()

    child = _start_slow_emulation(firmware, data, out)
    child.kill()
    child.wait(timeout=30)
    assert len(_temporaries(out)) == 1 and not out.exists()
    sparse = write_declaring_more(tmp_path / "sparse.h5", 10**6, 5, chunked=True)
    refused = trigger("emulate", str(firmware), "--data", str(sparse), "--out", str(out),
                      cwd=tmp_path, timeout=120)  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert _temporaries(out) == [] and not out.exists()


@pytest.mark.slow
def test_the_fast_engine_loads_without_tensorflow(firmware: Path, tmp_path: Path) -> None:
    data = tmp_path / "jets.h5"
    write_jets_file(data, *synthetic_jets(30, seed=5, max_particles=N))
    out = tmp_path / "p.h5"
    script = f"""
        import sys
        from trigger.emulate import emulate_file
        emulate_file({str(firmware)!r}, {str(data)!r}, {str(out)!r}, engine_name="fast",
                     progress=False)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    np.testing.assert_array_equal(predictions(out), hls_logits(firmware, data))


# --- compilers stop with the command ------------------------------------------------------

# A stand-in for g++ that compiles nothing for minutes: it records its own PID and that of the
# child it waits for (as g++ waits for cc1plus). The standard-flag probe returns at once.
_SLOW_COMPILER = """\
#!/bin/sh
case " $* " in *" -fsyntax-only "*) exit 0 ;; esac
sleep 300 &
echo $$ $! >> "{pids}"
wait
"""


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for a parent to collect it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_stops_the_compilers_at_once(tmp_path: Path) -> None:
    """SIGTERM during a compile: the command exits within seconds (143) and leaves no compiler
    (g++, or what it started) running."""
    pids = tmp_path / "pids"
    fake = tmp_path / "bin" / "g++"
    fake.parent.mkdir()
    fake.write_text(_SLOW_COMPILER.format(pids=pids))
    fake.chmod(0o755)
    sources = [tmp_path / "a.cpp", tmp_path / "b.cpp"]
    for source in sources:
        source.write_text("int f() { return 0; }\n")
    script = f"""
        from pathlib import Path
        from trigger.cli import stop_on_sigterm
        from trigger.hls.emulator import compile_project
        stop_on_sigterm()  # as the trigger command does
        sources = [Path(p) for p in {[str(s) for s in sources]!r}]
        compile_project(Path({str(tmp_path)!r}), sources, Path({str(tmp_path / "lib.so")!r}),
                        shared=True)
    """
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env)
    started: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(started) < 4:  # both compilers and their children
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
            started = [int(p) for p in pids.read_text().split()] if pids.exists() else []
        begin = time.monotonic()
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=15) == 143
        assert time.monotonic() - begin < 15
        time.sleep(0.2)  # the kill reaches every process of the group
        assert [pid for pid in started if _alive(pid)] == []
    finally:
        child.kill()
        for pid in started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
