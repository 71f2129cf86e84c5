"""An independent resource count: Yosys `synth_xilinx` (UltraScale+ cells, no vendor tools).

Yosys maps the Verilog to LUT1-6, flip-flops (FD*), CARRY8 and DSP48E2 cells; it does no
placement, routing or timing, so the counts are a netlist-level figure (Vivado usually
packs and optimises further).

Two ways to run it:
- `flat` (default): the whole design flattened into one netlist, one Yosys run.
- `per_stage`: each pipeline stage (`tagger_stageN`, the combinational logic between two
  register banks) synthesized and mapped alone, then the registers around the mapped stages:
  unused and constant register bits removed and chains packed into shift registers as `flat`
  does, but no logic optimised across a stage boundary, and the flip-flops left as generic
  one-bit cells (counted as FF). On a literature-size Deep Sets, `flat` needs more than
  11 GB and was unfinished after 1 h 47 min; per stage, one stage takes at most a few GB and
  minutes, the registers' assembly 10 minutes at 14 GB. Each stage's result is kept under
  `synth/per_stage/` with a key of its script and sources, so an interrupted count resumes
  where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from trigger.errors import TriggerError
from trigger.rtl.simulate import TOP, require_tool

FAMILY = "xcup"  # UltraScale+, the family of the recipes' xcvu13p part


# The mapped stages' cells are Xilinx primitives: known to Yosys as blackboxes.
PRIMITIVES = ("read_verilog -lib +/xilinx/cells_sim.v", "read_verilog -lib +/xilinx/cells_xtra.v")
# The registers around the mapped stages, without synth_xilinx's passes over the whole netlist
# (unfinished after 25 minutes at 14 GB on a literature-size design): registers with no load
# or a constant input removed, chains packed into SRL16E/SRLC32E as synth_xilinx packs them;
# flip-flops stay generic $_DFF_P_ cells (one per bit, counted as FF).
ASSEMBLY = "\n".join(
    [
        "hierarchy -top {top}",
        "proc",
        "flatten",
        "opt_clean",
        "simplemap",
        "opt_dff",
        "xilinx_srl -fixed -minlen 3",
        "techmap -map +/xilinx/cells_map.v",
        "opt_clean",
    ]
)


def count(cells: dict[str, int]) -> dict[str, Any]:
    """LUT/FF/carry/DSP/BRAM totals from Yosys cell counts."""
    lut = sum(n for c, n in cells.items() if c.startswith("LUT"))
    ff = sum(n for c, n in cells.items() if c.startswith(("FD", "LD", "$_DFF_")))
    carry = sum(n for c, n in cells.items() if c.startswith("CARRY"))
    dsp = sum(n for c, n in cells.items() if c.startswith("DSP"))
    bram = sum(n for c, n in cells.items() if c.startswith("RAMB"))
    srl = sum(n for c, n in cells.items() if c.startswith("SRL"))
    return {
        "lut": lut,
        "ff": ff,
        "carry": carry,
        "dsp": dsp,
        "bram": bram,
        "srl": srl,
        "cells": dict(sorted(cells.items())),
    }


def _stage_number(path: Path) -> int:
    return int(re.search(r"(\d+)$", path.stem).group(1))


def _sources(rtl_dir: Path) -> tuple[list[Path], Path, list[Path]]:
    """(pipeline stage modules in order, the top, the static library modules used)."""
    src = rtl_dir / "src"
    if any((src / "memfiles").glob("*")):
        # The layer contract has no lookup tables (only adders, shifts, max, clipping).
        msg = "internal: the traced student uses lookup tables, which the Yosys flow omits"
        raise TriggerError(msg)
    stages = sorted(src.glob(f"{TOP}_stage*.v"), key=_stage_number)
    # lookup_table.v reads a placeholder memory file at elaboration: leave it out.
    statics = [p for p in sorted((src / "static").glob("*.v")) if p.stem != "lookup_table"]
    return stages, src / f"{TOP}.v", statics


def _run(rtl_dir: Path, name: Path, reads: list[str], synth: str, reuse: bool) -> dict[str, int]:
    """One Yosys run (`name`.ys, .log, .json under rtl_dir): its cell counts by type.

    Paths are relative to the rtl directory, so the script still runs after the folder moves.
    With `reuse`, a result whose key (script and sources) matches is read instead of rerun.
    """
    stats, partial = name.with_suffix(".json"), name.with_suffix(".json.partial")
    script = "\n".join([*reads, synth, f"tee -q -o {partial.relative_to(rtl_dir)} stat -json", ""])
    key = hashlib.sha256(script.encode())
    for line in reads:
        if not line.split()[-1].startswith("+/"):  # Yosys's own library: fixed by its version
            key.update((rtl_dir / line.split()[-1]).read_bytes())
    key_path = name.with_suffix(".key")
    if (
        not (reuse and stats.is_file() and key_path.is_file())
        or key_path.read_text() != key.hexdigest()
    ):
        _yosys(rtl_dir, name.with_suffix(".ys"), script, partial, stats)
        key_path.write_text(key.hexdigest())
    text = stats.read_text()
    parsed = json.loads(text[text.find("{") :])
    design = parsed.get("design") or next(iter(parsed.get("modules", {}).values()), {})
    return {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}


def _yosys(rtl_dir: Path, script_path: Path, script: str, partial: Path, stats: Path) -> None:
    """Run one script; its statistics land in `stats` only once Yosys has succeeded."""
    script_path.parent.mkdir(parents=True, exist_ok=True)
    stats.unlink(missing_ok=True)
    script_path.write_text(script)
    log = script_path.with_suffix(".log")  # errors and warnings only (-q)
    with log.open("w") as out:
        done = subprocess.run(
            ["yosys", "-q", "-s", str(script_path.relative_to(rtl_dir))],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=rtl_dir,
        )
    if done.returncode != 0 or not partial.is_file():
        msg = f"yosys synth_xilinx failed (exit {done.returncode}): see {log}"
        raise TriggerError(msg)
    partial.rename(stats)


def _reads(paths: list[Path], rtl_dir: Path) -> list[str]:
    return [f"read_verilog {p.relative_to(rtl_dir)}" for p in paths]


def synthesize(rtl_dir: Path, mode: str = "flat", log: Any = None) -> dict[str, Any]:
    """Run `yosys synth_xilinx` on the core module (see the module doc for `mode`); figures,
    the cell breakdown and the mode."""
    require_tool("yosys")
    say = log or (lambda _msg: None)
    stages, top, statics = _sources(rtl_dir)
    out = rtl_dir / "synth"
    if mode == "flat":
        reads = _reads([*stages, top, *statics], rtl_dir)
        cells = _run(rtl_dir, out / "synth", reads, _synth(TOP, "-flatten"), False)
    else:
        for i, stage in enumerate(stages):
            say(f"yosys: pipeline stage {i + 1} of {len(stages)}")
            # A stage's ports are internal wires, not device pins: no I/O buffers (-noiopad),
            # which also spares Yosys' slowest pass on ports tens of thousands of bits wide.
            netlist = out / "per_stage" / f"{stage.stem}.mapped.v"
            synth = _synth(stage.stem, "-flatten -noiopad")
            synth += f"\nwrite_verilog -noattr {netlist.relative_to(rtl_dir)}"
            _run(
                rtl_dir,
                out / "per_stage" / stage.stem,
                _reads([stage, *statics], rtl_dir),
                synth,
                True,
            )
        say("yosys: the registers around the mapped stages")
        mapped = [out / "per_stage" / f"{stage.stem}.mapped.v" for stage in stages]
        reads = [*PRIMITIVES, *_reads([*mapped, top], rtl_dir)]
        cells = _run(rtl_dir, out / "per_stage" / TOP, reads, ASSEMBLY.format(top=TOP), True)
    return count(cells) | {"mode": mode}


def _synth(top: str, flags: str) -> str:
    return f"synth_xilinx -top {top} -family {FAMILY} {flags}"
