"""Hardware figures for the report: measured where a tool measured them, else an estimate.

Every firmware directory holds da4ml's cost-model estimate (`estimate.json`, written by
emit-hls for the student and the float reference). A synthesis report (`synthesis.json`,
Vivado/Vitis) or the open-tool flow (`rtl/hardware.json`, Verilator and Yosys) measures the
same design. An estimate is never presented as a measurement: every figure set carries
`source`, and estimates their `method`.
"""

from __future__ import annotations

import json
from pathlib import Path

from trigger.errors import TriggerError
from trigger.rtl.stage import ESTIMATE

HARDWARE_KEYS = ("latency_cycles", "latency_ns", "ii", "lut", "ff", "dsp", "bram")


def from_reports(project_dir: Path) -> dict | None:
    """Measured figures: a synthesis report or the RTL flow, whichever emit-hls left behind."""
    for name, source in (("synthesis.json", "synthesis"), ("rtl/hardware.json", "rtl")):
        path = Path(project_dir) / name
        if path.is_file():
            figures = json.loads(path.read_text())
            return {"source": figures.get("source", source), **figures}
    return None


def read_estimate(project_dir: Path) -> dict:
    """da4ml's cost-model estimate that emit-hls wrote beside the project."""
    path = Path(project_dir) / ESTIMATE
    if not path.is_file():
        msg = f"{path} not found: emit the firmware again with `trigger emit-hls`"
        raise TriggerError(msg)
    return json.loads(path.read_text())


def ratios(numerator: dict, denominator: dict) -> dict[str, float | None]:
    """Figure by figure, where both exist and the denominator is not zero."""
    return {
        k: numerator[k] / denominator[k]
        if numerator.get(k) is not None and denominator.get(k)
        else None
        for k in HARDWARE_KEYS
    }
