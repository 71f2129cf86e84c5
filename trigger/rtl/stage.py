"""Input stage + student -> pipelined Verilog (da4ml) -> Verilator proof and timing -> Yosys
resources, for the whole path from L1 words to logits.

firmware/NAME/rtl/ after the stage:
    src/tagger.v, src/tagger_stage*.v, src/tagger_wrapper.v, src/static/   the Verilog
    model/          da4ml's netlist (comb.json, pipeline.json)
    sim/            Verilator testbench (tb.cc) and its build
    synth/          the Yosys script and log
    input_stage/    the input stage alone as Verilog, counted by Yosys (its share)
    hardware.json   latency, II, LUT, FF, DSP, BRAM; each tool's own figures under `tools`;
                    the input stage's own under `input_stage`

Top-level figures come from the most authoritative open tool: resources from Yosys
`synth_xilinx`, latency and II measured in the Verilator simulation. da4ml's own estimate is
kept under `tools.da4ml`.
"""

from __future__ import annotations

import math
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from trigger.config import FirmwareConfig
from trigger.errors import CheckFailed, TriggerError
from trigger.hls.convert import FLOAT_REFERENCE_FORMAT, input_port
from trigger.inputs import InputStage
from trigger.io import write_json
from trigger.rtl import simulate, synth
from trigger.rtl.simulate import TOP, PortCoding
from trigger.rtl.trace import (
    Trace,
    trace_float_reference,
    trace_input_stage_alone,
    trace_student,
)
from trigger.taggers import predict

SOURCE = "rtl (Yosys synth_xilinx, Verilator)"
# da4ml's delay model counts adder levels (HWConfig adder_size=-1: one unit per adder). Its
# command line pairs a 5 ns clock with a cutoff of 5, i.e. one adder level per ns; we keep
# that ratio. No place and route runs here, so timing closure at the clock is not verified.
ADDER_LEVELS_PER_NS = 1.0
ESTIMATE_SOURCE = "estimate (da4ml cost model)"
STUDENT_ESTIMATE_METHOD = (
    "da4ml cost model of the exact fixed-point trace of the whole path (input stage from the "
    "L1 words, then the student): LUTs of the adder graph "
    "(constant multiplications as shift-adds, no DSPs), register bits of the pipeline as FFs, "
    "pipeline stages at the recipe's clock as latency; emit-hls --rtl measures the same design "
    "in Verilator and Yosys"
)
# Why the float reference gets da4ml's cost model but no Verilog: at ap_fixed<32,16> its sums
# are about 49 bits wide, and da4ml 0.5.2 mishandles signed values wider than 32 bits (its
# interpreter and its Verilog both gave wrong outputs for 80% of the demo's test jets, checked
# against Keras). Its adder-graph cost and pipeline depth only count bits, so they still hold.
FLOAT_REFERENCE_METHOD = (
    "da4ml cost model of the float model traced at {fmt} (weights and input rounded to it, "
    "exact sums, each layer output rounded and saturated to it): LUTs of the adder graph, "
    "register bits of the pipeline as FFs, pipeline stages at the recipe's clock as latency. "
    "An estimate: da4ml 0.5.2 cannot simulate values wider than 32 bits, so no Verilog is "
    "written or checked for it"
)


def latency_cutoff(clock_period: float) -> int:
    """Adder levels allowed between pipeline registers for a clock period in ns."""
    return max(1, math.floor(clock_period * ADDER_LEVELS_PER_NS))


def cost_model(trace: Trace, clock_period: float) -> tuple[Any, dict[str, Any]]:
    """da4ml's pipeline of `trace` cut for the clock, and the figures of its cost model."""
    from da4ml.trace import to_pipeline

    cutoff = latency_cutoff(clock_period)
    pipe = to_pipeline(trace.comb, cutoff, verbose=False)
    return pipe, {
        "version": version("da4ml"),
        "lut_estimate": float(trace.comb.cost),
        "adder_depth": float(max(trace.comb.latency)),
        "latency_cutoff_adder_levels": cutoff,
        "pipeline_stages": len(pipe.solutions),
        "register_bits": int(pipe.reg_bits),
    }


def _tool_version(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def check_tools() -> None:
    """One-line TriggerError naming the install command when verilator or yosys is missing."""
    simulate.require_tool("verilator")
    simulate.require_tool("yosys")


def emit_rtl(
    model: Any,
    stage: InputStage,
    out_dir: str | Path,
    firmware: FirmwareConfig | None = None,
    words: np.ndarray | None = None,
    *,
    hls_emulated: np.ndarray | None = None,
    reference: tuple[np.ndarray, str] | None = None,
    yosys: bool = True,
    log: Any = None,
) -> dict[str, Any]:
    """Write the whole tagger's Verilog (input stage and student) to `out_dir`, simulate it on
    jets' L1 words (`words`, port rows as `JetSample.words` gives them), count resources.

    The reference is `reference` (the outputs the firmware must equal and their name, as
    `trigger.hls.stage.exact_reference` gives them), by default the Python input stage's
    features through the student in Keras float32. `hls_emulated`, the hls4ml emulator's
    outputs on the same jets, is compared too. Returns the figures written to
    `out_dir/hardware.json`; `CheckFailed` when the simulation is not bit-exact.
    """
    say = log or (lambda _msg: None)
    firmware = firmware or FirmwareConfig()
    out_dir = Path(out_dir)
    check_tools() if yosys else simulate.require_tool("verilator")
    if words is None or len(words) == 0:
        msg = "emit_rtl needs test jets to simulate"
        raise TriggerError(msg)

    say("rtl: tracing the input stage and the student with da4ml")
    trace = trace_student(model, stage, firmware)
    pipe, da4ml = cost_model(trace, firmware.clock_period)
    stages = da4ml["pipeline_stages"]
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_verilog(pipe, out_dir, firmware)

    say("rtl: building the Verilator simulation")
    coding = PortCoding.of(pipe)
    binary = simulate.build(out_dir, coding)
    if reference is None:
        reference = (predict(model, stage.apply_words(words)), "keras-float32")
    expected = np.asarray(reference[0], np.float64)
    stream = simulate.run(binary, coding, words, extra_cycles=stages + 4)
    measured = simulate.measure(stream, expected)
    same = measured.pop("same")
    cycles = int(measured["latency_cycles"])
    rtl_out = stream[cycles : cycles + len(words)]
    exact = bool(same.all())
    verilator = {
        "version": _tool_version(["verilator", "--version"]),
        "jets": len(words),
        "latency_cycles": cycles,
        "latency_ns": cycles * firmware.clock_period,
        "ii": 1 if exact else None,
        "method": "one jet per clock; latency = cycle offset at which every output equals "
        "the student's (QKeras or HGQ); all jets right at one jet per clock -> II = 1",
    }
    bit_exact: dict[str, Any] = {
        "jets": len(words),
        "reference": reference[1],
        "bit_exact_fraction": float(same.mean()),
        "top_class_agreement": float(np.mean(rtl_out.argmax(-1) == expected.argmax(-1))),
    }
    if hls_emulated is not None:
        hls = np.asarray(hls_emulated, np.float64).reshape(rtl_out.shape)
        bit_exact["hls_emulator_bit_exact_fraction"] = float(np.all(rtl_out == hls, 1).mean())
    da4ml["method"] = (
        "da4ml cost model: LUTs of the adder graph (distributed arithmetic, "
        "constant multiplications as shift-adds); register bits of the pipeline"
    )
    tools: dict[str, Any] = {"da4ml": da4ml, "verilator": verilator}
    resources: dict[str, Any] = {"lut": None, "ff": None, "dsp": None, "bram": None}
    if yosys:
        say("rtl: counting resources with yosys synth_xilinx")
        counted = synth.synthesize(out_dir, firmware.yosys, say)
        counted["version"] = _tool_version(["yosys", "-V"])
        counted["family"] = synth.FAMILY
        tools["yosys"] = counted
        resources = {k: counted[k] for k in ("lut", "ff", "dsp", "bram")}
    input_stage = _input_stage_alone(stage, trace.input_format, out_dir, firmware, yosys, say)
    figures = {
        "source": SOURCE if yosys else "rtl (Verilator; resources not counted)",
        "latency_cycles": cycles,
        "latency_ns": cycles * firmware.clock_period,
        "ii": verilator["ii"],
        **resources,
        "carry": tools.get("yosys", {}).get("carry"),
        "clock_period_ns": firmware.clock_period,
        "part": firmware.part,
        "bit_exact": bit_exact,
        "ports": {
            "input": f"{trace.input_shape[0]} L1 words (candidate pT/eta/phi x "
            f"{stage.n_constituents}, jet pT/eta/phi/count); network input "
            f"{trace.input_format.hls()}",
            "output": f"{trace.output_format.hls()} x {trace.n_outputs}",
        },
        "timing": "not verified: no place and route (pipeline cut by da4ml's adder-depth model)",
        "model": "student",
        "input_stage": input_stage,
        "tools": tools,
    }
    write_json(out_dir / "hardware.json", figures)
    if not exact:
        msg = (
            f"{out_dir}: RTL simulation differs from the student on "
            f"{int((~same).sum())} of {len(words)} jets: see hardware.json"
        )
        raise CheckFailed(msg)
    return figures


def _write_verilog(pipe: Any, out_dir: Path, firmware: FirmwareConfig) -> None:
    from da4ml.codegen import VerilogModel

    VerilogModel(
        pipe,
        TOP,
        out_dir,
        part_name=firmware.part,
        clock_period=firmware.clock_period,
        latency_cutoff=latency_cutoff(firmware.clock_period),
    ).write()


INPUT_STAGE_DIR = "input_stage"


def _input_stage_alone(
    stage: InputStage, port: Any, out_dir: Path, firmware: FirmwareConfig, yosys: bool, say: Any
) -> dict[str, Any] | None:
    """The input stage by itself as Verilog (`out_dir/input_stage/`), counted by Yosys: its
    share of the whole path. Latency: its pipeline stages at the clock."""
    if not yosys:
        return None
    say("rtl: counting the input stage alone with yosys synth_xilinx")
    pipe, _ = cost_model(trace_input_stage_alone(stage, port), firmware.clock_period)
    stage_dir = out_dir / INPUT_STAGE_DIR
    _write_verilog(pipe, stage_dir, firmware)
    counted = synth.synthesize(stage_dir)
    stages = len(pipe.solutions)
    return {
        "source": "Yosys synth_xilinx of the input stage alone; latency: its pipeline stages",
        "latency_cycles": stages,
        "latency_ns": stages * firmware.clock_period,
        **{k: counted[k] for k in ("lut", "ff", "dsp")},
    }


ESTIMATE = "estimate.json"


def estimate(
    model: Any,
    stage: InputStage,
    out_dir: str | Path,
    firmware: FirmwareConfig | None = None,
    *,
    student: bool,
) -> dict[str, Any]:
    """da4ml's cost model of a model's whole firmware path, L1 words to logits, and of its
    input stage alone -> `out_dir/estimate.json`, labelled an estimate.

    The student is traced exactly as its firmware computes (the same trace `--rtl` turns into
    Verilog); the float reference at its HLS precision (see FLOAT_REFERENCE_METHOD). Both go
    through the same cost model, so the two compare like for like, and the student's
    Verilator/Yosys figures, when `--rtl` measures them, say how far the estimate is off.
    """
    firmware = firmware or FirmwareConfig()
    if student:
        trace, method = trace_student(model, stage, firmware), STUDENT_ESTIMATE_METHOD
        port = input_port(model)
    else:
        port = FLOAT_REFERENCE_FORMAT
        trace = trace_float_reference(model, stage, port)
        method = FLOAT_REFERENCE_METHOD.format(fmt=port.hls())
    figures = _estimate_figures(trace, firmware)
    alone = _estimate_figures(trace_input_stage_alone(stage, port), firmware)
    figures |= {
        "method": method,
        "model": "student" if student else "float reference",
        "input_stage": {k: alone[k] for k in ("latency_cycles", "latency_ns", "lut", "ff")},
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / ESTIMATE, figures)
    return figures


def _estimate_figures(trace: Trace, firmware: FirmwareConfig) -> dict[str, Any]:
    _, da4ml = cost_model(trace, firmware.clock_period)
    stages = da4ml["pipeline_stages"]
    return {
        "source": ESTIMATE_SOURCE,  # one cost model for both, so they compare like for like
        "latency_cycles": stages,
        "latency_ns": stages * firmware.clock_period,
        "ii": 1,
        "lut": round(da4ml["lut_estimate"]),
        "ff": da4ml["register_bits"],
        "dsp": 0,  # da4ml builds every constant multiplication from adders
        "bram": 0,
        "clock_period_ns": firmware.clock_period,
        "part": firmware.part,
        "tools": {"da4ml": da4ml},
    }
