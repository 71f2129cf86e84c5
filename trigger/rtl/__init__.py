"""Hardware numbers without Vivado: the student as Verilog, simulated and counted.

Public API (da4ml is imported inside the functions):
    emit_rtl(model, stage, out_dir, firmware=None, words=None, *, hls_emulated=None, yosys=True,
             log=None) -> dict (also written to out_dir/hardware.json)
    estimate(model, stage, out_dir, firmware=None, *, student) -> dict
        da4ml's cost model of the whole path (input stage + student or float reference), and of
        the input stage alone -> estimate.json
    cost_model(trace, clock_period) -> (pipeline, dict)
        da4ml's pipeline cut for the clock and its cost-model figures (LUTs, stages, registers)
    trace_student(model, stage, firmware=None) -> Trace   (da4ml logic, L1 words in, exact)
    trace_float_reference(model, stage, fmt) -> Trace
    check_tools()   one-line TriggerError when verilator or yosys is missing
"""

from trigger.rtl.stage import (
    ESTIMATE,
    ESTIMATE_SOURCE,
    SOURCE,
    check_tools,
    cost_model,
    emit_rtl,
    estimate,
    latency_cutoff,
)
from trigger.rtl.trace import Trace, quantize, trace_float_reference, trace_student

__all__ = [
    "ESTIMATE",
    "ESTIMATE_SOURCE",
    "SOURCE",
    "Trace",
    "check_tools",
    "cost_model",
    "emit_rtl",
    "estimate",
    "latency_cutoff",
    "quantize",
    "trace_float_reference",
    "trace_student",
]
