"""Synthesis report parsing on small reports written in the HLS tools' own formats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from trigger.config import FirmwareConfig
from trigger.errors import TriggerError
from trigger.hls.reports import (
    parse_csynth_xml,
    parse_vivado_synth_rpt,
    synthesis_report,
)
from trigger.hls.stage import synthesis_tool, synthesize

# Trimmed from the layout Vivado HLS 2020.1 writes to <prj>/solution1/syn/report/<top>_csynth.xml
CSYNTH_XML = """<?xml version="1.0" encoding="UTF-8"?>
<profile>
  <ReportVersion><Version>2020.1</Version></ReportVersion>
  <UserAssignments>
    <unit>ns</unit>
    <ProductFamily>virtexuplus</ProductFamily>
    <Part>xcvu13p-flga2577-2-e</Part>
    <TopModelName>tagger</TopModelName>
    <TargetClockPeriod>5.00</TargetClockPeriod>
    <ClockUncertainty>0.62</ClockUncertainty>
    <FlowTarget>vivado</FlowTarget>
  </UserAssignments>
  <PerformanceEstimates>
    <PipelineType>dataflow</PipelineType>
    <SummaryOfTimingAnalysis>
      <unit>ns</unit>
      <EstimatedClockPeriod>4.336</EstimatedClockPeriod>
    </SummaryOfTimingAnalysis>
    <SummaryOfOverallLatency>
      <unit>clock cycles</unit>
      <Best-caseLatency>14</Best-caseLatency>
      <Average-caseLatency>15</Average-caseLatency>
      <Worst-caseLatency>16</Worst-caseLatency>
      <Interval-min>1</Interval-min>
      <Interval-max>2</Interval-max>
    </SummaryOfOverallLatency>
  </PerformanceEstimates>
  <AreaEstimates>
    <Resources>
      <BRAM_18K>0</BRAM_18K>
      <DSP48E>12</DSP48E>
      <FF>8123</FF>
      <LUT>45210</LUT>
      <URAM>0</URAM>
    </Resources>
    <AvailableResources>
      <BRAM_18K>5376</BRAM_18K>
      <DSP48E>12288</DSP48E>
      <FF>3456000</FF>
      <LUT>1728000</LUT>
      <URAM>1280</URAM>
    </AvailableResources>
  </AreaEstimates>
</profile>
"""

# The utilization tables of Vivado's report_utilization (sections 1-3), trimmed.
VIVADO_SYNTH_RPT = """\
1. CLB Logic
------------

+----------------------------+-------+-------+-----------+-------+
|          Site Type         |  Used | Fixed | Available | Util% |
+----------------------------+-------+-------+-----------+-------+
| CLB LUTs*                  | 30012 |     0 |   1728000 |  1.74 |
|   LUT as Logic             | 30012 |     0 |   1728000 |  1.74 |
| CLB Registers              |  7001 |     0 |   3456000 |  0.20 |
+----------------------------+-------+-------+-----------+-------+


2. BLOCKRAM
-----------

+----------------+------+-------+-----------+-------+
|    Site Type   | Used | Fixed | Available | Util% |
+----------------+------+-------+-----------+-------+
| Block RAM Tile |  1.5 |     0 |      2688 |  0.06 |
| URAM           |    0 |     0 |      1280 |  0.00 |
+----------------+------+-------+-----------+-------+


3. ARITHMETIC
-------------

+-----------+------+-------+-----------+-------+
| Site Type | Used | Fixed | Available | Util% |
+-----------+------+-------+-----------+-------+
| DSPs      |   10 |     0 |     12288 |  0.08 |
+-----------+------+-------+-----------+-------+
"""


def _project(tmp_path: Path, xml: str = CSYNTH_XML, name: str = "tagger_csynth.xml") -> Path:
    report_dir = tmp_path / "tagger_prj" / "solution1" / "syn" / "report"
    report_dir.mkdir(parents=True)
    (report_dir / name).write_text(xml)
    # a sub-function report beside it must not be taken for the design total
    (report_dir / "dense_latency_csynth.xml").write_text(xml.replace("45210", "7"))
    return tmp_path


def test_csynth_xml(tmp_path: Path) -> None:
    report = synthesis_report(_project(tmp_path))
    assert report is not None
    assert report["source"] == "synthesis"
    assert report["part"] == "xcvu13p-flga2577-2-e"
    assert report["clock_period_ns"] == 5.0
    assert report["estimated_clock_ns"] == 4.336
    assert report["latency"] == {"min_cycles": 14, "max_cycles": 16, "min_ns": 70.0, "max_ns": 80.0}
    assert report["interval"] == {"min_cycles": 1, "max_cycles": 2}
    assert (report["latency_cycles"], report["latency_ns"], report["ii"]) == (16, 80.0, 2)
    assert (report["lut"], report["ff"], report["dsp"], report["bram"]) == (45210, 8123, 12, 0)
    assert report["available"]["lut"] == 1728000
    assert report["available"]["dsp"] == 12288
    assert report["utilization"]["lut"] == pytest.approx(45210 / 1728000)
    json.dumps(report)  # serialisable as synthesis.json


def test_vitis_names(tmp_path: Path) -> None:
    xml = CSYNTH_XML.replace("DSP48E", "DSP")
    report = synthesis_report(_project(tmp_path, xml, name="csynth.xml"))
    assert report["dsp"] == 12 and report["available"]["dsp"] == 12288


def test_missing_fields_are_left_out(tmp_path: Path) -> None:
    xml = CSYNTH_XML.replace("<Interval-max>2</Interval-max>", "").replace(
        "<TargetClockPeriod>5.00</TargetClockPeriod>", ""
    )
    report = parse_csynth_xml(
        _project(tmp_path, xml) / "tagger_prj/solution1/syn/report/tagger_csynth.xml"
    )
    assert report["ii"] is None
    assert report["latency"]["max_ns"] is None
    assert report["latency_cycles"] == 16


def test_broken_report_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TriggerError, match="not a readable csynth report"):
        synthesis_report(_project(tmp_path, "<profile><Perf"))


def test_no_synthesis_yet(tmp_path: Path) -> None:
    assert synthesis_report(tmp_path) is None


def test_vivado_synth_rpt_overrides_estimates(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (project / "vivado_synth.rpt").write_text(VIVADO_SYNTH_RPT)
    assert parse_vivado_synth_rpt(project / "vivado_synth.rpt") == {
        "lut": 30012,
        "ff": 7001,
        "uram": 0,
        "dsp": 10,
        "bram": 3,
    }
    report = synthesis_report(project)
    assert report["tool"] == "vivado_synth"
    assert (report["lut"], report["dsp"]) == (30012, 10)
    assert report["csynth_estimate"]["lut"] == 45210


@pytest.mark.parametrize(("backend", "tool"), [("Vivado", "vivado_hls"), ("Vitis", "vitis-run")])
def test_synth_without_tool_is_a_clear_error(tmp_path, monkeypatch, backend, tool) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TriggerError, match=f"'{tool}'"):
        synthesize(tmp_path, FirmwareConfig(backend=backend))


def test_synth_runs_the_tool_and_writes_json(tmp_path, monkeypatch) -> None:
    """A stand-in `vivado_hls` that leaves a report behind, as the real one does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vivado_hls"
    report_dir = "tagger_prj/solution1/syn/report"
    xml = tmp_path / "csynth.xml"
    xml.write_text(CSYNTH_XML)
    fake.write_text(f"#!/bin/sh\nmkdir -p {report_dir}\ncp {xml} {report_dir}/tagger_csynth.xml\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    project = tmp_path / "fw"
    project.mkdir()
    assert synthesis_tool(FirmwareConfig()) == str(fake)
    report = synthesize(project, FirmwareConfig())
    assert report["latency_cycles"] == 16
    assert json.loads((project / "synthesis.json").read_text())["lut"] == 45210
