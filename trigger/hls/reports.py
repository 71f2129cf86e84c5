"""Synthesis reports -> `synthesis.json`: latency, initiation interval, resources, part totals.

Reads the HLS tool's `csynth.xml` (Vivado HLS: `<top>_csynth.xml`, Vitis HLS: `csynth.xml`
as well) and, when the Vivado logic-synthesis step ran, `vivado_synth.rpt`, whose LUT/FF/DSP/BRAM
counts are then preferred to the HLS estimates. Missing fields are left out, never guessed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from trigger.errors import TriggerError
from trigger.hls.convert import PROJECT_NAME

_RESOURCE_KEYS = {
    "LUT": "lut",
    "FF": "ff",
    "DSP": "dsp",
    "DSP48E": "dsp",
    "BRAM_18K": "bram",
    "URAM": "uram",
}


def find_csynth_xml(project_dir: str | Path) -> Path | None:
    """The top function's csynth.xml under any `*_prj/solution*/syn/report/`."""
    found = sorted(Path(project_dir).glob("*_prj/*/syn/report/*csynth.xml"))
    # The top function's report: '<top>_csynth.xml' or 'csynth.xml'; sub-function reports
    # are named after the sub-function and are not the design total.
    tops = [p for p in found if p.name in ("csynth.xml", f"{PROJECT_NAME}_csynth.xml")]
    return (tops or found or [None])[0]


def _number(text: str | None) -> float | int | None:
    if text is None:
        return None
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def _find(root: ET.Element, *paths: str) -> float | int | None:
    for path in paths:
        node = root.find(path)
        if node is not None:
            value = _number(node.text)
            if value is not None:
                return value
    return None


def parse_csynth_xml(path: str | Path) -> dict[str, Any]:
    """Latency (cycles and ns), II, resources and part totals from an HLS csynth.xml."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as error:
        msg = f"{path}: not a readable csynth report ({error})"
        raise TriggerError(msg) from None
    perf = "./PerformanceEstimates"
    latency = f"{perf}/SummaryOfOverallLatency"
    clock = _find(root, "./UserAssignments/TargetClockPeriod")
    report: dict[str, Any] = {"source": "synthesis", "tool": "csynth", "report": str(path)}
    part = root.find("./UserAssignments/Part")
    if part is not None and part.text:
        report["part"] = part.text.strip()
    report["clock_period_ns"] = clock
    report["estimated_clock_ns"] = _find(
        root, f"{perf}/SummaryOfTimingAnalysis/EstimatedClockPeriod"
    )
    lo = _find(root, f"{latency}/Best-caseLatency")
    hi = _find(root, f"{latency}/Worst-caseLatency")
    ii_min = _find(root, f"{latency}/Interval-min")
    ii_max = _find(root, f"{latency}/Interval-max")
    # Newer Vitis reports also give the latency in ns; otherwise cycles x target clock.
    lo_ns = _find(root, f"{latency}/Best-caseRealTimeLatency")
    hi_ns = _find(root, f"{latency}/Worst-caseRealTimeLatency")
    if clock is not None:
        lo_ns = lo_ns if lo_ns is not None else (lo * clock if lo is not None else None)
        hi_ns = hi_ns if hi_ns is not None else (hi * clock if hi is not None else None)
    report["latency"] = {"min_cycles": lo, "max_cycles": hi, "min_ns": lo_ns, "max_ns": hi_ns}
    report["interval"] = {"min_cycles": ii_min, "max_cycles": ii_max}
    # The figures the validation report reads: worst case.
    report["latency_cycles"] = hi
    report["latency_ns"] = hi_ns
    report["ii"] = ii_max
    resources: dict[str, Any] = {}
    available: dict[str, Any] = {}
    for section, target in (("Resources", resources), ("AvailableResources", available)):
        node = root.find(f"./AreaEstimates/{section}")
        for child in [] if node is None else list(node):
            key = _RESOURCE_KEYS.get(child.tag)
            value = _number(child.text)
            if key is not None and value is not None:
                target[key] = value
    report.update({k: resources.get(k) for k in ("lut", "ff", "dsp", "bram")})
    if "uram" in resources:
        report["uram"] = resources["uram"]
    report["available"] = available
    report["utilization"] = {k: resources[k] / available[k] for k in resources if available.get(k)}
    return report


def parse_vivado_synth_rpt(path: str | Path) -> dict[str, int]:
    """LUT, FF, DSP and BRAM counts from Vivado's utilization tables (post logic synthesis)."""
    counts: dict[str, int] = {}
    section = 0
    patterns = (
        (1, re.compile(r"^\|\s*(CLB|Slice) LUTs\*?\s*\|"), "lut"),
        (1, re.compile(r"^\|\s*(CLB|Slice) Registers\s*\|"), "ff"),
        (2, re.compile(r"^\|\s*Block RAM Tile\s*\|"), "bram_tiles"),
        (2, re.compile(r"^\|\s*URAM\s*\|"), "uram"),
        (3, re.compile(r"^\|\s*DSPs\s*\|"), "dsp"),
    )
    for line in Path(path).read_text(errors="replace").splitlines():
        heading = re.match(r"^(\d)\.\s", line)
        if heading:
            section = int(heading.group(1))
        for wanted, pattern, key in patterns:
            if section == wanted and pattern.match(line) and key not in counts:
                value = _number(line.split("|")[2])
                if value is not None:
                    counts[key] = value
    if "bram_tiles" in counts:
        counts["bram"] = round(counts.pop("bram_tiles") * 2)  # one tile = two 18K BRAMs
    return counts


def synthesis_report(project_dir: str | Path) -> dict[str, Any] | None:
    """Everything the project's synthesis left behind, or None if it has not run."""
    project_dir = Path(project_dir)
    xml = find_csynth_xml(project_dir)
    if xml is None:
        return None
    report = parse_csynth_xml(xml)
    vsynth = project_dir / "vivado_synth.rpt"
    if vsynth.is_file():
        counts = parse_vivado_synth_rpt(vsynth)
        if counts:
            report["csynth_estimate"] = {k: report.get(k) for k in ("lut", "ff", "dsp", "bram")}
            report.update(counts)
            report["tool"] = "vivado_synth"
    return report
