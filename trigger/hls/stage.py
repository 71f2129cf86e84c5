"""`trigger emit-hls`: runs/NAME -> firmware/NAME (HLS project, emulator, proof of exactness).

firmware/NAME/ after the stage:
    build_prj.tcl, firmware/, ...   the hls4ml project, ready for `vivado_hls`/`vitis-run`; its
                                    top function `tagger` takes L1 words: the input stage
                                    (firmware/input_stage*.h) runs inside it, then the network
    emulator/libemulator.so         the firmware C++ compiled with g++ (see `emulate`)
    emulator.json                   how to call it (input/output shapes)
    fast_emulator.npz               the network's arithmetic for the fast emulator (`emulate`)
    conversion.json                 every layer's fixed-point types and the steps that set them
    emulation.json                  emulator vs the student on test jets, against an exact
                                    reference (`reference`: keras-float32 where Keras's float32
                                    sums are exact, else integer-plan), the testbench's verdict
                                    on tb_data/, and `failed_checks`
    tb_data/, tagger_test.cpp       test vectors (L1 words) and the testbench that compares every
                                    output bit for bit (`csim` in Vivado/Vitis HLS, or g++:
                                    testbench/)
    student.h5, input_stage.json    what the project was made from
    recipe.yaml                     the run's recipe with the firmware section used here
    float_reference/                the float model as an HLS project with wide fixed types
    estimate.json                   da4ml's cost model of the whole path, words to logits (LUT,
                                    FF, latency), and of the input stage alone: an estimate;
                                    float_reference/estimate.json likewise
    synthesis.json                  (with --synth) latency, II and resources from the reports
    rtl/                            (with --rtl) da4ml Verilog, Verilator check, hardware.json
    artifact.json                   the seal: every file's hash, and the run, firmware section
                                    and data it was made from

The directory is built under a temporary name and renamed when complete; each project's
hls4ml_config.yml names the final directory, so hls4ml's `link_existing_project` opens it.
When an exactness check fails (emulator, testbench or `--rtl`'s Verilator simulation against the
reference), the directory is still completed and sealed, for inspection, and emit-hls raises
`CheckFailed` (exit 1); `require_proven` then refuses it to `validate` and `emulate` until
emit-hls succeeds there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigger.artifacts import (
    EMIT,
    TRAIN,
    Artifact,
    check_output,
    data_identity,
    file_digest,
    open_artifact,
    stage_output,
)
from trigger.config import (
    DataConfig,
    FirmwareConfig,
    Recipe,
    digest,
    load_recipe,
    override_section,
    save_recipe,
)
from trigger.data.loader import JetSample
from trigger.errors import CheckFailed, TriggerError
from trigger.inputs import InputStage
from trigger.io import write_json

FLOAT_REFERENCE_DIR = "float_reference"
# Jets in tb_data/: the testbench's test vectors (C simulation of a few hundred is seconds).
TESTBENCH_JETS = 500
_SYNTH_TOOL = {"Vivado": "vivado_hls", "Vitis": "vitis-run"}


def synthesis_tool(firmware: FirmwareConfig) -> str:
    """Path of the HLS tool for the recipe's backend; a one-line error when it is absent."""
    tool = _SYNTH_TOOL[firmware.backend]
    found = shutil.which(tool)
    if found is None:
        msg = (
            f"--synth needs '{tool}' ({firmware.backend} backend) on PATH: install the AMD/Xilinx "
            f"{firmware.backend} HLS tools and source their settings script, or drop --synth"
        )
        raise TriggerError(msg)
    return found


def synthesize(project_dir: str | Path, firmware: FirmwareConfig) -> dict[str, Any]:
    """Run C synthesis in a written project and write its `synthesis.json`."""
    from trigger.hls.reports import synthesis_report

    project_dir = Path(project_dir)
    tool = synthesis_tool(firmware)
    if firmware.backend == "Vivado":
        options = "reset=1 csim=0 synth=1 cosim=0 validation=0 export=0 vsynth=0 fifo_opt=0"
        command = [tool, "-f", "build_prj.tcl", options]
    else:
        (project_dir / "build_opt.tcl").write_text(
            "array set opt {\n    reset 1\n    csim 0\n    synth 1\n    cosim 0\n"
            "    validation 0\n    export 0\n    vsynth 0\n    fifo_opt 0\n}\n"
        )
        command = [tool, "--tcl", "build_prj.tcl", "--mode", "hls"]
    with (project_dir / "synthesis.log").open("w") as log:
        done = subprocess.run(command, cwd=project_dir, stdout=log, stderr=subprocess.STDOUT)
    report = synthesis_report(project_dir)
    if done.returncode != 0 or report is None:
        msg = f"synthesis failed in {project_dir} (exit {done.returncode}): see synthesis.log"
        raise TriggerError(msg)
    write_json(project_dir / "synthesis.json", report)
    return report


def _versions() -> dict[str, str]:
    import hls4ml
    import qkeras
    import tensorflow as tf

    return {
        "hls4ml": hls4ml.__version__,
        "qkeras": getattr(qkeras, "__version__", "unknown"),
        "tensorflow": tf.__version__,
        "python": sys.version.split()[0],
    }


def emulation_sample(
    data: DataConfig, stage: InputStage, data_path: str | Path | None, jets: int
) -> JetSample:
    """Test-split jets (L1 words, and features from the model's saved input stage)."""
    from trigger.data.loader import load_test_split

    test = load_test_split(data, stage, data_path or data.path)
    return test.take(np.arange(min(jets, len(test))))


def compare(emulated: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Bit-exact and top-class agreement of emulator and QKeras outputs, jet by jet."""
    same = np.all(emulated.reshape(len(emulated), -1) == reference.reshape(len(reference), -1), 1)
    return {
        "jets": len(emulated),
        "bit_exact_fraction": float(same.mean()) if len(same) else None,
        "top_class_agreement": float(np.mean(emulated.argmax(-1) == reference.argmax(-1)))
        if len(same)
        else None,
        "max_abs_difference": float(np.abs(emulated - reference).max()) if len(same) else None,
    }


def prove_with_testbench(
    project_dir: Path, jets: JetSample, expected: np.ndarray
) -> dict[str, Any]:
    """Write the testbench and its vectors (the jets' words, the outputs the firmware must give
    on them), build it with g++ and run it, as Vivado/Vitis `csim` would; return what it
    printed."""
    from trigger.hls.testbench import build_testbench, run_testbench, write_testbench

    write_testbench(project_dir, jets.words, expected)
    build_testbench(project_dir)
    done = run_testbench(project_dir)
    printed = done.stdout.strip().splitlines()
    return {
        "jets": len(jets),
        "exit_code": done.returncode,
        "printed": printed[-1] if printed else "",
    }


# What the firmware is checked against (emulation.json's "reference"): Keras where it is exact,
# else the plan's arithmetic, held exactly in float64 by the fast emulator.
REFERENCES = {
    "keras-float32": "input_stage.json (trigger.inputs) + student.h5 in Keras: exact, every sum "
    "fits float32's 24 significant bits",
    "integer-plan": "input_stage.json (trigger.inputs) + the student's fixed-point arithmetic as "
    "conversion.json states it, exact in float64 (trigger.hls.fast): some sum needs more than "
    "float32's 24 significant bits, so Keras's float32 predict rounds",
}


def exact_reference(
    student: Any, plan: Any, stage: InputStage, jets: JetSample
) -> tuple[np.ndarray, str]:
    """The outputs the firmware must equal on `jets` and the name of their reference: Keras's
    predict where its float32 sums are exact, else the plan's arithmetic (`REFERENCES`)."""
    from trigger.hls.fast import plan_emulator
    from trigger.taggers import predict

    if plan.keras_float32_exact():
        return predict(student, jets.x), "keras-float32"
    return plan_emulator(plan, stage)(jets.words), "integer-plan"


def failed_checks(emulation: dict[str, Any]) -> list[str]:
    """The exactness checks an emulation.json records as failed (none: the firmware is the
    model, bit for bit, on its test jets)."""
    failed = []
    if emulation.get("bit_exact_fraction") != 1.0:
        failed.append(
            f"bit-exact check (fraction {emulation.get('bit_exact_fraction')} of "
            f"{emulation.get('jets')} jets, against {emulation.get('reference')})"
        )
    testbench = emulation.get("testbench", {})
    if testbench.get("exit_code") != 0:
        failed.append(f"testbench ({testbench.get('printed') or 'no verdict'})")
    rtl = emulation.get("rtl")
    if rtl is not None and rtl.get("bit_exact_fraction") != 1.0:
        failed.append(
            f"RTL simulation (fraction {rtl.get('bit_exact_fraction')} of {rtl.get('jets')} "
            "jets, rtl/hardware.json)"
        )
    return failed


def require_proven(firmware_dir: str | Path) -> dict[str, Any]:
    """The emulation.json of firmware whose exactness checks passed when emit-hls made it;
    `CheckFailed` for any other."""
    path = Path(firmware_dir) / "emulation.json"
    emulation = json.loads(path.read_text())
    failed = failed_checks(emulation)
    if failed:
        checks = " and ".join(failed)
        msg = f"{firmware_dir} is not proven bit-exact: {checks} failed (details: {path})"
        raise CheckFailed(msg)
    return emulation


def write_project(
    student: Any, stage: InputStage, project_dir: str | Path, firmware: FirmwareConfig
) -> tuple[Any, Any]:
    """The whole tagger as an HLS project (the student converted by hls4ml, the input stage in
    its top function) with its C++ emulator compiled. Returns (hls_model, plan)."""
    from trigger.hls import input_stage
    from trigger.hls.convert import convert_student
    from trigger.hls.emulator import build_emulator
    from trigger.hls.fast import save_arithmetic

    hls_model, plan = convert_student(student, project_dir, firmware)
    save_arithmetic(project_dir, plan)  # refuses values a double cannot hold exactly
    input_stage.install(project_dir, stage, int(np.prod(student.output_shape[1:])))
    words = (3 * stage.n_constituents + 4,)
    build_emulator(project_dir, words, tuple(student.output_shape[1:]))
    return hls_model, plan


def emit_sources(run: Artifact, recipe: Recipe, data_path: str | Path) -> dict[str, str]:
    """What firmware is made from: the run, the firmware section, the data it is checked on."""
    return {
        "run": run.identity,
        "recipe": recipe.digest("firmware"),
        "data": data_identity(data_path),
    }


def _name_final_location(project: Path, tmp: Path, final: Path) -> None:
    """hls4ml records the directory it wrote to; name the one the project will live in, so
    `hls4ml.converters.link_existing_project(final)` can compile it."""
    config = project / "hls4ml_config.yml"
    config.write_text(config.read_text().replace(str(tmp), str(final.resolve())))


def emit_hls(
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    data_path: str | Path | None = None,
    firmware: FirmwareConfig | None = None,
    overrides: tuple[str, ...] | list[str] = (),
    synth: bool = False,
    rtl: bool = False,
    replace: bool = False,
    log: Any = None,
) -> Path:
    """Firmware of a run's student (and its float reference); return `out_dir`.

    `firmware` replaces the run's own firmware section (what `trigger run` passes), and
    `overrides` (`firmware.KEY=VALUE`) change it. `out_dir` appears complete or not at all,
    sealed with `emit_sources`; `replace` lets it replace an earlier firmware there, never
    anything else.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run = open_artifact(run_dir, TRAIN)
    recipe = load_recipe(run_dir / "recipe.yaml")
    firmware = override_section(firmware or recipe.firmware, "firmware", overrides)
    recipe = recipe.model_copy(update={"firmware": firmware})
    data_path = Path(data_path or recipe.data.path)
    inputs = [run_dir, data_path]
    check_output(out_dir, EMIT, inputs, replace)
    source = _Source(
        run_dir / "student.h5",
        run_dir / "float.h5",
        run_dir / "input_stage.json",
        recipe.data,
        firmware,
        data_path,
    )
    sources = emit_sources(run, recipe, data_path)
    with stage_output(out_dir, EMIT, sources, inputs=inputs, replace=replace) as tmp:
        _write_firmware(tmp, out_dir, source, synth=synth, rtl=rtl, log=log)
        save_recipe(recipe, tmp / "recipe.yaml")
    require_proven(out_dir)
    return out_dir


def emit_model(
    model_path: str | Path,
    contract_path: str | Path,
    out_dir: str | Path,
    *,
    data_path: str | Path,
    overrides: tuple[str, ...] | list[str] = (),
    synth: bool = False,
    rtl: bool = False,
    replace: bool = False,
    log: Any = None,
) -> Path:
    """Firmware of a QKeras model made outside trigger; return `out_dir`.

    `contract_path` is its input stage in the `input_stage.json` form every run writes
    (n_constituents, features, center, shift, input_bits, input_integer); `data_path` a jet
    file in the hls4ml
    layout whose test split checks the firmware. Same conversion, emulator, testbench and
    `--rtl` path as for a run's student; no float reference.
    """
    model_path, contract_path, data_path = Path(model_path), Path(contract_path), Path(data_path)
    for path, what in ((model_path, "model"), (contract_path, "input contract")):
        if not path.is_file():
            msg = f"{what} not found: {path}"
            raise TriggerError(msg)
    contract = load_contract(contract_path)
    firmware = override_section(FirmwareConfig(), "firmware", overrides)
    data = DataConfig(
        path=str(data_path), n_constituents=contract.n_constituents, features=contract.features
    )
    inputs = [model_path, contract_path, data_path]
    check_output(out_dir, EMIT, inputs, replace)
    sources = {
        "model": file_digest(model_path)[:16],
        "contract": file_digest(contract_path)[:16],
        "firmware": digest({"firmware": firmware.model_dump(mode="json")}),
        "data": data_identity(data_path),
    }
    source = _Source(model_path, None, contract_path, data, firmware, data_path)
    with stage_output(out_dir, EMIT, sources, inputs=inputs, replace=replace) as tmp:
        _write_firmware(tmp, Path(out_dir), source, synth=synth, rtl=rtl, log=log)
    require_proven(out_dir)
    return Path(out_dir)


# The keys of an input-stage contract (`emit-hls --inputs`): the JSON kind of each ([int]: a
# list of whole numbers), and its description.
CONTRACT_KEYS = {
    "n_constituents": (int, "a whole number"),
    "features": ([str], "a list of feature names"),
    "center": ([int], "a list of whole numbers"),
    "shift": ([int], "a list of whole numbers"),
    "input_bits": (int, "a whole number"),
    "input_integer": (int, "a whole number"),
}


def _holds(value: Any, kind: Any) -> bool:
    if isinstance(kind, list):
        return isinstance(value, list) and all(_holds(v, kind[0]) for v in value)
    return isinstance(value, kind) and not isinstance(value, bool)  # JSON true is no number


def _contract_problem(fields: Any) -> str | None:
    """What makes `fields` (a parsed JSON document) no input-stage contract, or None."""
    if not isinstance(fields, dict):
        got = {list: "an array", str: "a string", type(None): "null"}.get(type(fields), "a number")
        return f"a JSON object with {', '.join(CONTRACT_KEYS)} is needed, not {got}"
    missing = [key for key in CONTRACT_KEYS if key not in fields]
    unknown = [key for key in fields if key not in CONTRACT_KEYS]
    if missing or unknown:
        return "; ".join(
            f"{what} {', '.join(keys)}"
            for what, keys in (("missing", missing), ("unknown", unknown))
            if keys
        )
    for key, (kind, what) in CONTRACT_KEYS.items():
        if not _holds(fields[key], kind):
            return f"{key} must be {what}, not {json.dumps(fields[key])}"
    if fields["n_constituents"] < 1:
        return f"n_constituents must be at least 1, not {fields['n_constituents']}"
    return None


def load_contract(path: Path) -> InputStage:
    """The input stage of a model made outside trigger, refused in one line unless it is a
    complete contract of the right types (`CONTRACT_KEYS`)."""
    try:
        fields = json.loads(path.read_text())
    except ValueError as error:
        msg = f"{path}: not an input-stage contract (not JSON: {error})"
        raise TriggerError(msg) from None
    problem = _contract_problem(fields)
    if problem is not None:
        msg = f"{path}: not an input-stage contract ({problem})"
        raise TriggerError(msg)
    return InputStage.load(path)


@dataclass(frozen=True)
class _Source:
    """What one firmware directory is made from."""

    student: Path  # QKeras model (.h5)
    float_model: Path | None  # its float twin, for the float-reference project (runs only)
    contract: Path  # input_stage.json
    data: DataConfig  # how the test split is cut
    firmware: FirmwareConfig
    data_path: Path


def _write_firmware(
    tmp: Path, final: Path, source: _Source, *, synth: bool, rtl: bool, log: Any
) -> None:
    """Project, emulator, testbench and their checks (and RTL, synthesis) in `tmp`."""
    from trigger.hls import input_stage
    from trigger.hls.convert import convert_float_reference, input_port
    from trigger.hls.emulator import emulate
    from trigger.taggers import load_model, predict

    say = log or (lambda _msg: None)
    firmware = source.firmware
    if synth:
        synthesis_tool(firmware)  # fail before an hour of work, not after
    if rtl:
        from trigger.rtl import check_tools

        check_tools()
    stage = InputStage.load(source.contract)
    student = load_model(source.student)
    expected = (stage.n_constituents, len(stage.features))
    if tuple(student.input_shape[1:]) != expected:
        msg = (
            f"{source.student}: input {tuple(student.input_shape[1:])} does not match the input "
            f"stage {source.contract} ({expected[0]} candidates x {expected[1]} features)"
        )
        raise TriggerError(msg)
    port = input_port(student)
    if (port.width, port.integer - 1) != (stage.input_bits, stage.input_integer):
        msg = (
            f"{source.student}: its input quantizer is {port.hls()}, the input stage "
            f"{source.contract} rounds to {stage.input_bits} bits with {stage.input_integer} "
            "integer bits"
        )
        raise TriggerError(msg)
    jets = emulation_sample(source.data, stage, source.data_path, firmware.emulation_jets)

    say(f"emit-hls: converting {source.student} and compiling its C++ emulator (g++)")
    hls_model, plan = write_project(student, stage, tmp, firmware)
    n_out = int(np.prod(student.output_shape[1:]))
    shutil.copyfile(source.student, tmp / "student.h5")
    shutil.copyfile(source.contract, tmp / "input_stage.json")
    summary = {**plan.summary(), "backend": firmware.backend}
    summary["input_stage"] = {
        "top_function": "tagger(candidate pT/eta/phi words, jet pT/eta/phi/count, logits)",
        "features": list(stage.features),
        "center": list(stage.center),
        "shift": list(stage.shift),
    }
    summary["firmware"] = firmware.model_dump(mode="json")
    summary["versions"] = _versions()
    write_json(tmp / "conversion.json", summary)
    projects = [tmp]
    float_model = None
    if source.float_model is not None:
        say("emit-hls: writing the float reference project")
        float_model = load_model(source.float_model)
        convert_float_reference(float_model, tmp / FLOAT_REFERENCE_DIR, firmware)
        input_stage.install(tmp / FLOAT_REFERENCE_DIR, stage, n_out)
        projects.append(tmp / FLOAT_REFERENCE_DIR)
    for project in projects:
        _name_final_location(project, tmp, final)

    emulated = emulate(tmp, jets.words)
    expected, reference = exact_reference(student, plan, stage, jets)
    result = compare(emulated, expected)
    result |= {"reference": reference, "reference_description": REFERENCES[reference]}
    if reference != "keras-float32":  # how far Keras's own rounding is from the firmware
        result["keras_float32"] = compare(emulated, predict(student, jets.x))
    result["data"] = str(source.data_path)
    say("emit-hls: building and running the C-simulation testbench (g++)")
    bench = np.arange(min(TESTBENCH_JETS, len(jets)))
    result["testbench"] = prove_with_testbench(tmp, jets.take(bench), expected[bench])
    result["failed_checks"] = failed_checks(result)
    write_json(tmp / "emulation.json", result)
    del hls_model
    from trigger.rtl import emit_rtl, estimate

    say("emit-hls: estimating latency and resources (da4ml cost model)")
    estimate(student, stage, tmp, firmware, student=True)
    if float_model is not None:
        estimate(float_model, stage, tmp / FLOAT_REFERENCE_DIR, firmware, student=False)
    if result["failed_checks"] and (rtl or synth):
        say("emit-hls: the exactness checks failed: no --rtl or --synth on this firmware")
        rtl = synth = False
    if rtl:
        try:
            emit_rtl(student, stage, tmp / "rtl", firmware, jets.words, hls_emulated=emulated,
                     reference=(expected, reference), log=say)  # fmt: skip
        except CheckFailed:
            # Sealed like the other failed checks, with rtl/ kept for inspection.
            hardware = json.loads((tmp / "rtl" / "hardware.json").read_text())
            result["rtl"] = hardware["bit_exact"]
            result["failed_checks"] = failed_checks(result)
            write_json(tmp / "emulation.json", result)
            say(f"emit-hls: {result['failed_checks'][-1]} failed: no --synth on this firmware")
            synth = False
    if synth:
        for project in projects:
            say(f"emit-hls: synthesising {project.relative_to(tmp).as_posix()}")
            report = synthesize(project, firmware)
            say(
                f"emit-hls: latency {report.get('latency_cycles')} cycles, LUT "
                f"{report.get('lut')}, FF {report.get('ff')}, DSP {report.get('dsp')}"
            )
    say(
        f"emit-hls: {final}: {result['jets']} test jets, bit-exact fraction "
        f"{result['bit_exact_fraction']}, top-class agreement {result['top_class_agreement']}; "
        f"testbench: {result['testbench']['printed']}"
    )
