"""Never lose a user's work.

Stage outputs appear whole or not at all, carry the identity of what made them, and replace
only an earlier output of the same stage; `trigger run` follows the recipe it is given; every
input and output problem is one line and exit 2; a killed stage leaves the previous complete
output (or nothing) and its rerun succeeds.

Most cases use one tiny `trigger run` over toy jets, copied into each test that changes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import synthetic_jets, write_synthetic_file
from trigger.artifacts import (
    EMIT,
    TRAIN,
    VALIDATE,
    check_output,
    open_artifact,
    require_source,
    seal,
)
from trigger.cli import cli
from trigger.data.layout import JET_FEATURES, write_jets_file
from trigger.errors import TriggerError

pytest.importorskip("qkeras")

TRIGGER = str(Path(sys.executable).with_name("trigger"))
TINY = {
    "name": "tiny",
    "data": {"n_constituents": 8, "features": ["pt", "deta", "dphi"]},
    "architecture": {"phi": [4], "rho": [4]},
    "training": {"epochs": 2, "batch_size": 64, "patience": 2},
    "distillation": {
        "teacher": {
            "epochs": 1,
            "batch_size": 64,
            "n_constituents": 8,
            "architecture": {"embed": 8, "blocks": 1, "heads": 2, "rho": [8]},
        }
    },
    "firmware": {"emulation_jets": 100},
}


def trigger(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([TRIGGER, *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def assert_one_line_error(result, *fragments: str) -> None:
    """`result` of a subprocess or of click's CliRunner: exit 2, one `trigger: error:` line."""
    code = getattr(result, "returncode", getattr(result, "exit_code", None))
    stderr = result.stderr
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trigger: error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_tiny_recipe(path: Path, data: Path) -> Path:
    path.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "path": str(data)}}))
    return path


@pytest.fixture(scope="module")
def tiny_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory after `trigger run tiny.yaml`: runs/, firmware/, validation/."""
    work = tmp_path_factory.mktemp("tiny")
    write_tiny_recipe(work / "tiny.yaml", write_synthetic_file(work / "toy.h5", 100))
    result = trigger("run", "tiny.yaml", cwd=work)
    assert result.returncode in (0, 1), result.stderr  # 1: a gate failed on toy jets
    return work


@pytest.fixture
def work(tiny_work: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny working directory: its recipe still reads the original toy
    file, so the copied run, firmware, report and teacher cache are all current."""
    copy = tmp_path / "work"
    shutil.copytree(tiny_work, copy, symlinks=True)
    return copy


def identities(work: Path) -> dict[str, str]:
    return {
        "run": open_artifact(work / "runs/tiny", TRAIN).identity,
        "firmware": open_artifact(work / "firmware/tiny", EMIT).identity,
        "validation": open_artifact(work / "validation/tiny", VALIDATE).identity,
    }


# --- 1. outputs never destroy what a stage did not write -----------------------------------


@pytest.mark.slow
def test_a_directory_no_stage_wrote_is_never_replaced(work: Path) -> None:
    thesis = work / "u" / "thesis.txt"
    thesis.parent.mkdir()
    thesis.write_text("x")
    for args in (
        ("emit-hls", "runs/tiny", "--out", "u", "--force"),
        ("validate", "runs/tiny", "--firmware", "firmware/tiny", "--out", "u", "--force"),
        ("train-and-compress", "tiny.yaml", "--out", "u", "--force"),
    ):
        assert_one_line_error(trigger(*args, cwd=work), "u exists", "no trigger stage wrote")
        assert thesis.read_text() == "x" and sorted(os.listdir(work / "u")) == ["thesis.txt"]


@pytest.mark.slow
def test_a_stage_never_writes_over_its_own_input(work: Path) -> None:
    before = identities(work)
    for args, output in (
        (("emit-hls", "runs/tiny", "--out", "runs/tiny", "--force"), "runs/tiny"),
        (("emit-hls", "runs/tiny", "--out", "runs/tiny/fw", "--force"), "runs/tiny/fw"),
        (("validate", "runs/tiny", "--firmware", "firmware/tiny", "--out", "firmware/tiny",
          "--force"), "firmware/tiny"),
    ):  # fmt: skip
        assert_one_line_error(trigger(*args, cwd=work), f"output {output} overlaps")
    assert identities(work) == before
    assert not (work / "runs/tiny/fw").exists()


@pytest.mark.slow
def test_replacing_an_earlier_output_needs_force_and_keeps_foreign_files(work: Path) -> None:
    result = trigger("emit-hls", "runs/tiny", "--out", "firmware/tiny", cwd=work)
    assert_one_line_error(result, "earlier `trigger emit-hls` output", "--force")
    notes = work / "firmware/tiny/notes.txt"
    notes.write_text("mine")
    result = trigger("emit-hls", "runs/tiny", "--out", "firmware/tiny", "--force", cwd=work)
    assert_one_line_error(result, "files trigger did not write (notes.txt)")
    assert notes.read_text() == "mine"
    notes.unlink()
    result = trigger("emit-hls", "runs/tiny", "--out", "firmware/tiny", "--force", cwd=work)
    assert result.returncode == 0, result.stderr
    open_artifact(work / "firmware/tiny", EMIT)


# --- 2. `trigger run` follows the recipe it is given --------------------------------------


@pytest.mark.slow
def test_run_honours_changed_gates_and_firmware(work: Path) -> None:
    gate = "validation.gates.max_accuracy_drop=-1"
    result = trigger("run", "tiny.yaml", "--set", gate, cwd=work)
    assert result.returncode == 1, result.stderr
    assert "train-and-compress: runs/tiny is up to date" in result.stdout
    assert "emit-hls: firmware/tiny is up to date" in result.stdout
    assert "(limit -1.0) FAILED" in result.stdout
    assert "max_accuracy_drop" in result.stderr.splitlines()[-1]

    part = "xcku115-flvb2104-2-i"
    changes = ("--set", "firmware.clock_period=10", "--set", f"firmware.part={part}")
    result = trigger("run", "tiny.yaml", *changes, cwd=work)
    assert result.returncode in (0, 1), result.stderr
    assert "emit-hls: firmware/tiny is up to date" not in result.stdout
    for project in ("firmware/tiny", "firmware/tiny/float_reference"):
        config = yaml.safe_load(
            (work / project / "hls4ml_config.yml").read_text().replace("!keras_model", "")
        )
        assert config["ClockPeriod"] == 10.0 and config["Part"] == part
    reported = yaml.safe_load((work / "validation/tiny/recipe.yaml").read_text())
    assert reported["firmware"]["clock_period"] == 10.0
    result = trigger("run", "tiny.yaml", *changes, cwd=work)
    assert "emit-hls: firmware/tiny is up to date" in result.stdout


# --- 3. a run directory is whole: mixtures are refused, damage means retrain ---------------


@pytest.mark.slow
def test_a_mixed_run_directory_is_refused_in_one_line(work: Path) -> None:
    shutil.copyfile(work / "runs/tiny/student.h5", work / "runs/tiny/float.h5")
    result = trigger("emit-hls", "runs/tiny", "--out", "fw", cwd=work)
    assert_one_line_error(result, "runs/tiny: float.h5 changed after")
    assert not (work / "fw").exists()


@pytest.mark.slow
def test_run_retrains_a_run_whose_student_was_deleted(work: Path) -> None:
    (work / "runs/tiny/student.h5").unlink()
    result = trigger("run", "tiny.yaml", cwd=work)
    assert result.returncode in (0, 1), result.stderr
    assert "training student" in result.stdout
    assert "train-and-compress: runs/tiny is up to date" not in result.stdout
    run = open_artifact(work / "runs/tiny", TRAIN)
    require_source(open_artifact(work / "firmware/tiny", EMIT), "run", run)


# --- 4. firmware belongs to its run -------------------------------------------------------


@pytest.mark.slow
def test_validate_refuses_firmware_emitted_from_another_run(work: Path) -> None:
    # Another run (its student differs) and firmware emitted from it, as train-and-compress and
    # emit-hls would leave them, without training again.
    other_run, other_firmware = work / "runs/other", work / "firmware/other"
    shutil.copytree(work / "runs/tiny", other_run)
    run = open_artifact(other_run, TRAIN)
    with (other_run / "student.h5").open("ab") as student:
        student.write(b"\0")
    run = seal(other_run, TRAIN, run.sources)
    shutil.copytree(work / "firmware/tiny", other_firmware)
    seal(other_firmware, EMIT, {**open_artifact(other_firmware, EMIT).sources, "run": run.identity})
    result = trigger("validate", "runs/tiny", "--firmware", "firmware/other", "--out", "v",
                     cwd=work)  # fmt: skip
    assert_one_line_error(result, "firmware/other was made from another run", "runs/tiny")
    assert not (work / "v").exists()


# --- 5. generation: no endless loop, one writer, every worker stopped ----------------------


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (("--eta-max", "-1"), "--eta-max must be in (0, 5.0]"),
        (("--pt-min", "7000", "--pt-max", "8000"), "min < 6500 GeV (half the collision energy)"),
    ],
)
def test_an_empty_window_is_refused_at_once(tmp_path: Path, window, message) -> None:
    args = ("data", "generate", "--out", "x.h5", "--jets-per-class", "5", *window)
    assert_one_line_error(trigger(*args, cwd=tmp_path), message)
    assert os.listdir(tmp_path) == []


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        if int(fields.get("PPid", "0").strip()) == pid:
            found.append(int(status.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _as_in_a_terminal() -> None:
    """Ctrl-C reaches a foreground command: undo the SIGINT-ignoring a test run started in the
    background (`make test &`) passes on to its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_generation(work: Path) -> subprocess.Popen:
    args = ["data", "generate", "--out", "x.h5", "--jets-per-class", "100000", "--workers", "2"]
    process = subprocess.Popen(
        [TRIGGER, *args], cwd=work, stderr=subprocess.DEVNULL, preexec_fn=_as_in_a_terminal
    )
    deadline = time.monotonic() + 120
    while len(_children(process.pid)) < 2 or not list(work.glob("x.h5.shards/settings.json")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    return process


@pytest.mark.slow
def test_a_second_generation_into_the_same_file_is_refused(tmp_path: Path) -> None:
    first = _start_generation(tmp_path)
    try:
        args = ("data", "generate", "--out", "x.h5", "--jets-per-class", "100000")
        assert_one_line_error(trigger(*args, cwd=tmp_path), "another `trigger data generate`")
        assert first.poll() is None  # the first one goes on undisturbed
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
@pytest.mark.parametrize(("sent", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_generation_and_all_its_workers(tmp_path: Path, sent, code) -> None:
    process = _start_generation(tmp_path)
    children = _children(process.pid)
    try:
        process.send_signal(sent)
        assert process.wait(timeout=180) == code  # 1 would read as a failed gate
        deadline = time.monotonic() + 30
        while any(_running(pid) for pid in children):
            assert time.monotonic() < deadline, [p for p in children if _running(p)]
            time.sleep(0.1)
        assert not (tmp_path / "x.h5").exists()
    finally:  # a failed check leaves no generation running
        for pid in [process.pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()


# The garbage collector runs a weakref callback when the signal arrives: Python drops any
# exception raised there, so the exit must be raised again once the callback returns.
_SIGTERM_INSIDE_A_WEAKREF_CALLBACK = """
import os, signal, time, weakref
from trigger.cli import stop_on_sigterm

class Thing:
    pass

def callback(_ref):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)

stop_on_sigterm()
thing = Thing()
ref = weakref.ref(thing, callback)
del thing
time.sleep(5)
print("still running")
"""


def test_a_sigterm_during_garbage_collection_still_stops_the_command() -> None:
    done = subprocess.run([sys.executable, "-c", _SIGTERM_INSIDE_A_WEAKREF_CALLBACK],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 143, done.stderr
    assert done.stdout == "" and "Exception ignored" not in done.stderr, done.stderr


# --- 6. one line, never a traceback --------------------------------------------------------


def _train_on(data: Path, tmp_path: Path):
    recipe = write_tiny_recipe(tmp_path / "tiny.yaml", data)
    args = ["train-and-compress", str(recipe), "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(cli, args)
    assert not (tmp_path / "run").exists()
    return result


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("nan_pt", "1 jets have NaN or infinite j_pt"),
        ("nan_softdrop_mass", "1 jets have NaN or infinite j_mass_mmdt"),
        ("no_jets", "0 jets are too few for the split"),
        ("three_jets", "3 jets are too few for the split"),
        ("no_top", "the training split holds no t jets"),
    ],
)
def test_data_that_cannot_train_is_refused_before_training(tmp_path, defect, message) -> None:
    constituents, jets = synthetic_jets(20, seed=1)
    if defect.startswith("nan"):
        column = "j_pt" if defect == "nan_pt" else "j_mass_mmdt"
        jets[7, JET_FEATURES.index(column)] = np.nan
    kept = {
        "no_jets": slice(0, 0),
        "three_jets": slice(0, 3),
        "no_top": jets[:, JET_FEATURES.index("j_t")] == 0,
    }.get(defect, slice(None))
    write_jets_file(tmp_path / "bad.h5", constituents[kept], jets[kept])
    assert_one_line_error(_train_on(tmp_path / "bad.h5", tmp_path), message)


@pytest.mark.slow
def test_a_truncated_model_is_one_line(work: Path) -> None:
    from trigger.errors import TriggerError
    from trigger.taggers import load_model

    student = work / "runs/tiny/student.h5"
    student.write_bytes(student.read_bytes()[:4000])
    result = trigger("emit-hls", "runs/tiny", "--out", "fw", cwd=work)
    assert_one_line_error(result, "runs/tiny: student.h5 changed after")
    with pytest.raises(TriggerError, match=r"student\.h5: not a readable Keras model"):
        load_model(student)

    (teacher,) = (work / "runs/.teachers").glob("*/teacher.h5")
    teacher.write_bytes(teacher.read_bytes()[:4000])
    result = trigger("train-and-compress", "tiny.yaml", "--out", "runs/again", cwd=work)
    assert_one_line_error(result, "cached teacher unusable", f"delete {teacher.parent}")
    assert not (work / "runs/again").exists()


@pytest.mark.slow
def test_an_output_under_a_file_is_one_line(work: Path) -> None:
    result = trigger("emit-hls", "runs/tiny", "--out", "tiny.yaml/fw", cwd=work)
    assert_one_line_error(result, "cannot write tiny.yaml/fw", "tiny.yaml is a file")
    args = ("data", "generate", "--out", "tiny.yaml/x.h5", "--jets-per-class", "5")
    assert_one_line_error(trigger(*args, cwd=work), "tiny.yaml is a file")


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root mounts")
def test_an_output_on_a_read_only_file_system_is_one_line(work: Path) -> None:
    (work / "ro").mkdir()
    command = (
        f"mount -t tmpfs -o ro tmpfs ro && exec {TRIGGER} validate runs/tiny "
        "--firmware firmware/tiny --out ro/v"
    )
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", command], cwd=work, capture_output=True, text=True
    )
    assert_one_line_error(result, "cannot write ro/v: read-only file system")


# --- 7. nonsense a recipe can no longer ask for --------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("quantization.input={bits: 8, integer: 9}", "quantization.input: integer (9)"),
        ("quantization.output={bits: 6, integer: 6}", "quantization.output: integer (6)"),
        ("data.n_constituents=12", "mean pooling over 12 constituents"),
        ("data.features=[pt, ptrel]", "feature 'ptrel' is not computed by the firmware's"),
        ("quantization.method=hgq", "hgq prunes by learning zero-bit weights"),
    ],
)
def test_a_recipe_firmware_cannot_build_is_refused_at_load(tmp_path, override, message) -> None:
    data = write_synthetic_file(tmp_path / "toy.h5", 20)
    recipe = write_tiny_recipe(tmp_path / "tiny.yaml", data)
    args = ["train-and-compress", str(recipe), "--out", str(tmp_path / "run"), "--set", override]
    assert_one_line_error(CliRunner().invoke(cli, args), message)
    assert not (tmp_path / "run").exists()


# --- 8. the emitted project opens with hls4ml itself ---------------------------------------


@pytest.mark.slow
# hls4ml's link_existing_project leaves hls4ml_config.yml open (utils/link.py).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_emitted_project_opens_with_hls4ml(work: Path) -> None:
    import hls4ml

    from trigger.hls import emulate
    from trigger.inputs import InputStage, random_words
    from trigger.taggers import load_model, predict

    # Emitted afresh: hls4ml compiles into the OutputDir its config names, an absolute path, so
    # linking the fixture's copied firmware would build into the original.
    assert trigger("emit-hls", "runs/tiny", "--out", "fw", cwd=work).returncode == 0
    firmware = work / "fw"
    words = random_words(64, 8, np.random.default_rng(0))
    x = InputStage.load(firmware / "input_stage.json").apply_words(words)
    linked = hls4ml.converters.link_existing_project(str(firmware))
    linked.compile()  # hls4ml's own bridge runs the network part: features in
    emulated = emulate(firmware, words)
    np.testing.assert_array_equal(linked.predict(x).reshape(len(x), -1), emulated)
    np.testing.assert_array_equal(emulated, predict(load_model(work / "runs/tiny/student.h5"), x))
    linked = hls4ml.converters.link_existing_project(str(firmware / "float_reference"))
    linked.compile()
    assert np.isfinite(linked.predict(x)).all()


# --- killed mid-way: the previous output or nothing, and the rerun succeeds ----------------


def test_a_file_output_is_replaced_whole(tmp_path: Path) -> None:
    from trigger.io import write_json

    for version in (1, 2):  # e.g. a plot or a manifest written again
        write_json(tmp_path / "out" / "a.json", {"version": version})
    assert json.loads((tmp_path / "out" / "a.json").read_text()) == {"version": 2}
    assert os.listdir(tmp_path / "out") == ["a.json"]


def test_leftovers_of_killed_writers_are_cleared_or_put_back(tmp_path: Path) -> None:
    from trigger.io import atomic_path

    finished = subprocess.Popen(["true"])
    finished.wait()  # a pid whose process is gone, as after a SIGKILL
    out = tmp_path / "firmware" / "x"
    half_built = out.with_name(f".x.tmp-{finished.pid}")
    swapped_out = out.with_name(f".x.old-{finished.pid}")
    running = out.with_name(".x.tmp-1")  # pid 1 runs: its temporary is left alone
    for folder in (half_built, swapped_out, running):
        folder.mkdir(parents=True)
        (folder / "a.txt").write_text(folder.name)
    seal(swapped_out, EMIT, {})
    # Killed between its two renames: the complete earlier output goes back into place.
    check_output(out, EMIT, replace=True)
    assert (out / "a.txt").read_text() == swapped_out.name
    assert not half_built.exists() and not swapped_out.exists() and running.exists()
    with atomic_path(out) as tmp:
        tmp.mkdir()
    assert not any(out.iterdir())
    assert sorted(p.name for p in out.parent.iterdir()) == [".x.tmp-1", "x"]


def kill_while_writing(args: list[str], work: Path, out: Path) -> int:
    """Start a stage, SIGKILL it once its temporary output holds a file; return its pid."""
    process = subprocess.Popen([TRIGGER, *args], cwd=work, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    tmp = out.with_name(f".{out.name}.tmp-{process.pid}")
    deadline = time.monotonic() + 600
    while not (tmp.is_dir() and any(tmp.iterdir())):
        assert process.poll() is None, f"{args[0]} ended before it wrote anything"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert tmp.exists()  # killed half-way: its temporary is left behind
    return process.pid


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "args", "out"),
    [
        (TRAIN, ["train-and-compress", "tiny.yaml", "--out", "runs/tiny"], "runs/tiny"),
        (EMIT, ["emit-hls", "runs/tiny", "--out", "firmware/tiny"], "firmware/tiny"),
        (VALIDATE, ["validate", "runs/tiny", "--firmware", "firmware/tiny", "--out",
                    "validation/tiny"], "validation/tiny"),
    ],
)  # fmt: skip
def test_a_killed_stage_leaves_the_previous_output(work: Path, stage, args, out) -> None:
    before = open_artifact(work / out, stage)
    pid = kill_while_writing([*args, "--force"], work, work / out)
    assert open_artifact(work / out, stage) == before
    result = trigger(*args, "--force", cwd=work)
    assert result.returncode in (0, 1), result.stderr  # 1: a gate failed on toy jets
    assert open_artifact(work / out, stage).sources == before.sources
    assert not (work / out).with_name(f".{Path(out).name}.tmp-{pid}").exists()


@pytest.mark.slow
def test_a_killed_first_training_leaves_nothing(work: Path) -> None:
    args = ["train-and-compress", "tiny.yaml", "--out", "runs/fresh"]
    pid = kill_while_writing(args, work, work / "runs/fresh")
    assert not (work / "runs/fresh").exists()
    result = trigger(*args, cwd=work)
    assert result.returncode == 0, result.stderr
    assert json.loads((work / "runs/fresh/artifact.json").read_text())["stage"] == TRAIN
    assert not (work / f"runs/.fresh.tmp-{pid}").exists()


# --- seals are derived, not trusted ---------------------------------------------------------


def test_an_edited_identity_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.txt").write_text("weights")
    sealed = seal(out, TRAIN, {"data": "abc"})
    marker = out / "artifact.json"
    payload = json.loads(marker.read_text())
    assert open_artifact(out, TRAIN).identity == sealed.identity
    payload["identity"] = "0123456789abcdef"  # another run's identity, pasted in
    marker.write_text(json.dumps(payload))
    with pytest.raises(TriggerError, match=r"identity in artifact\.json is not the one its files"):
        open_artifact(out, TRAIN)


@pytest.mark.slow
def test_a_run_given_another_identity_is_refused_downstream(work: Path) -> None:
    marker = work / "runs/tiny/artifact.json"
    payload = json.loads(marker.read_text())
    payload["identity"] = open_artifact(work / "firmware/tiny", EMIT).sources["run"][::-1]
    marker.write_text(json.dumps(payload))
    result = trigger("emit-hls", "runs/tiny", "--out", "firmware/again", cwd=work)
    assert_one_line_error(result, "runs/tiny: the identity in artifact.json")
    result = trigger("validate", "runs/tiny", "--firmware", "firmware/tiny", "--out", "v",
                     cwd=work)  # fmt: skip
    assert_one_line_error(result, "runs/tiny: the identity in artifact.json")


@pytest.mark.slow
def test_a_missing_data_file_is_one_line_wherever_the_user_stands(work: Path) -> None:
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    recipe = yaml.safe_load((work / "tiny.yaml").read_text())
    recipe["data"]["path"] = "toy.h5"  # relative to the working directory
    (work / "relative.yaml").write_text(yaml.safe_dump(recipe))
    result = trigger("train-and-compress", "../relative.yaml", "--out", "r", cwd=elsewhere)
    assert_one_line_error(result, "data file not found: toy.h5", f"looked for in {elsewhere}")
    for option in ("--data", "--shifted"):
        value = "missing.h5" if option == "--data" else "up=missing.h5"
        result = trigger("validate", "../runs/tiny", "--firmware", "../firmware/tiny", "--out",
                         "v", option, value, cwd=elsewhere)  # fmt: skip
        assert_one_line_error(result, "data file not found: missing.h5", f"in {elsewhere}")


# --- single-file outputs follow the stage directories' rule ---------------------------------


def test_a_plot_never_replaces_the_data_or_a_file_trigger_did_not_write(tmp_path: Path) -> None:
    data = write_synthetic_file(tmp_path / "jets.h5", 40)
    before = data.read_bytes()
    plot = tmp_path / "jets.png"

    def inspect(out: Path, *more: str) -> subprocess.CompletedProcess:
        return trigger("data", "inspect", str(data), "--plot", str(out), *more, cwd=tmp_path)

    assert_one_line_error(inspect(data, "--force"), "is this command's input")
    assert data.read_bytes() == before
    assert inspect(plot).returncode == 0 and plot.read_bytes().startswith(b"\x89PNG")
    assert_one_line_error(inspect(plot), "pass --force")
    assert inspect(plot, "--force").returncode == 0
    foreign = tmp_path / "photo.png"
    from PIL import Image

    with Image.open(plot) as image:
        image.save(foreign)  # the same picture, written by another program
    kept = foreign.read_bytes()
    assert_one_line_error(inspect(foreign, "--force"), "did not write it")
    assert foreign.read_bytes() == kept


# --- monitoring a deployed firmware: a verdict, an exit code, and the usual refusals --------


def _pt_scaled_file(path: Path, scale: float, seed: int) -> Path:
    """Toy jets of another seed with every candidate's and the jet's pT multiplied by
    `scale`: a calibration drift."""
    from trigger.data.layout import PARTICLE_FEATURES

    constituents, jets = synthetic_jets(100, seed)
    constituents[..., PARTICLE_FEATURES.index("j1_pt")] *= scale
    jets[:, JET_FEATURES.index("j_pt")] *= scale
    write_jets_file(path, constituents, jets)
    return path


def _monitor(work: Path, data: str, out: str, *extra: str) -> subprocess.CompletedProcess:
    return trigger("monitor", "firmware/tiny", "--reference", "runs/tiny", "--data", data,
                   "--out", out, *extra, cwd=work)  # fmt: skip


def test_monitor_flags_a_calibration_drift_and_passes_a_nominal_sample(work: Path) -> None:
    _pt_scaled_file(work / "nominal.h5", 1.0, seed=11)
    _pt_scaled_file(work / "drifted.h5", 1.5, seed=11)
    result = _monitor(work, "nominal.h5", "m/nominal")
    assert result.returncode == 0, result.stderr
    summary = json.loads((work / "m/nominal/monitor.json").read_text())
    assert not summary["drift"] and summary["jets"] == 500
    assert summary["tests"] == 8 * 3 + 6 + 5  # features at each rank, scores, observables
    assert (work / "m/nominal/report.html").is_file()
    open_artifact(work / "m/nominal", "monitor")

    result = _monitor(work, "drifted.h5", "m/drifted")
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "drift flagged in" in line and "pt #" in line, line
    summary = json.loads((work / "m/drifted/monitor.json").read_text())
    assert {"pt #1", "pt"} <= set(summary["flagged"])
    assert not any(name.startswith(("deta", "dphi")) for name in summary["flagged"])

    again = _monitor(work, "nominal.h5", "m/nominal")
    assert again.returncode == 0 and "up to date" in again.stdout
    result = _monitor(work, "drifted.h5", "m/nominal")
    assert_one_line_error(result, "m/nominal holds an earlier `trigger monitor` output", "--force")
    assert not json.loads((work / "m/nominal/monitor.json").read_text())["drift"]


def test_monitor_refuses_what_it_cannot_compare_in_one_line(work: Path) -> None:
    _pt_scaled_file(work / "nominal.h5", 1.0, seed=12)
    import h5py

    with h5py.File(work / "other_layout.h5", "w") as f:
        f["jets"] = np.zeros((3, 4))
    result = _monitor(work, "other_layout.h5", "m")
    assert_one_line_error(result, "other_layout.h5", "not the hls4ml LHC-jet layout")
    result = _monitor(work, "nominal.h5", "m", "--reference-data", "missing.h5")
    assert_one_line_error(result, "the run's training data not found: missing.h5")
    result = _monitor(work, "nominal.h5", "m", "--reference-data", "nominal.h5")
    assert_one_line_error(result, "nominal.h5 is not the data file runs/tiny was trained on")
    # Firmware emitted from another run.
    other_run = work / "runs/other"
    shutil.copytree(work / "runs/tiny", other_run)
    with (other_run / "student.h5").open("ab") as student:
        student.write(b"\0")
    seal(other_run, TRAIN, open_artifact(work / "runs/tiny", TRAIN).sources)
    result = trigger("monitor", "firmware/tiny", "--reference", "runs/other", "--data",
                     "nominal.h5", "--out", "m", cwd=work)  # fmt: skip
    assert_one_line_error(result, "firmware/tiny was made from another run", "runs/other")
    assert not (work / "m").exists()


# --- adapting a run: same footprint, same firmware types, the usual refusals ----------------


def test_an_adapted_run_emits_firmware_of_the_same_types_and_zeros(work: Path) -> None:
    """Labelled toy jets of new conditions; the adapted run goes through emit-hls like any."""
    from trigger import taggers

    _pt_scaled_file(work / "new.h5", 1.3, seed=13)
    result = trigger("adapt", "runs/tiny", "--data", "new.h5", "--out", "runs/adapted",
                     "--epochs", "2", cwd=work)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "on the nominal one" in result.stdout
    adapted = open_artifact(work / "runs/adapted", TRAIN)
    assert adapted.sources["adapted_from"] == open_artifact(work / "runs/tiny", TRAIN).identity
    before = taggers.load_model(work / "runs/tiny/student.h5")
    after = taggers.load_model(work / "runs/adapted/student.h5")
    for old, new in zip(taggers.dense_layers(before), taggers.dense_layers(after), strict=True):
        for what in ("units", "kernel_quantizer_internal", "bias_quantizer_internal"):
            assert str(getattr(old, what, None)) == str(getattr(new, what, None)), what
        for a, b in zip(old.get_weights(), new.get_weights(), strict=True):
            assert np.array_equal(a != 0, b != 0)
    result = trigger("emit-hls", "runs/adapted", "--out", "firmware/adapted", cwd=work)
    assert result.returncode == 0, result.stderr
    conversions = [json.loads((work / f"firmware/{n}/conversion.json").read_text())
                   for n in ("tiny", "adapted")]  # fmt: skip
    for key in ("input", "output", "layers", "input_stage"):
        assert conversions[0][key] == conversions[1][key], key
    again = trigger("adapt", "runs/tiny", "--data", "new.h5", "--out", "runs/adapted",
                    "--epochs", "2", cwd=work)  # fmt: skip
    assert again.returncode == 0 and "up to date" in again.stdout


def test_adapt_refuses_the_run_own_data_and_a_moved_reference_in_one_line(work: Path) -> None:
    toy = yaml.safe_load((work / "tiny.yaml").read_text())["data"]["path"]
    result = trigger("adapt", "runs/tiny", "--data", toy, "--out", "r", cwd=work)
    assert_one_line_error(result, "is the data runs/tiny was trained on")
    _pt_scaled_file(work / "new.h5", 1.3, seed=14)
    result = trigger("adapt", "runs/tiny", "--data", "new.h5", "--out", "r",
                     "--reference-data", "new.h5", cwd=work)  # fmt: skip
    assert_one_line_error(result, "new.h5 is not the data file runs/tiny was trained on")
    result = trigger("adapt", "runs/tiny", "--data", "new.h5", "--out", "r", "--epochs", "0",
                     cwd=work)  # fmt: skip
    assert result.returncode == 2 and "--epochs" in result.stderr
    assert not (work / "r").exists()
