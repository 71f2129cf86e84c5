"""An independent resource count: Yosys `synth_xilinx` (UltraScale+ cells, no vendor tools).

Yosys maps the Verilog to LUT1-6, flip-flops (FD*), CARRY8 and DSP48E2 cells; it does no
placement, routing or timing, so the counts are a netlist-level figure (Vivado usually
packs and optimises further).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from trigger.errors import TriggerError
from trigger.rtl.simulate import TOP, require_tool

FAMILY = "xcup"  # UltraScale+, the family of the recipes' xcvu13p part


def _script(sources: list[Path], stats: Path, base: Path) -> str:
    """Paths relative to the rtl directory, so the script still runs after the folder moves."""
    reads = "\n".join(f"read_verilog {p.relative_to(base)}" for p in sources)
    synth = f"synth_xilinx -top {TOP} -family {FAMILY} -flatten"
    return f"{reads}\n{synth}\ntee -q -o {stats.relative_to(base)} stat -json\n"


def count(cells: dict[str, int]) -> dict[str, Any]:
    """LUT/FF/carry/DSP/BRAM totals from Yosys cell counts."""
    lut = sum(n for c, n in cells.items() if c.startswith("LUT"))
    ff = sum(n for c, n in cells.items() if c.startswith(("FD", "LD")))
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


def synthesize(rtl_dir: Path) -> dict[str, Any]:
    """Run `yosys synth_xilinx` on the core module; figures plus the cell breakdown."""
    require_tool("yosys")
    src = rtl_dir / "src"
    sources = [*sorted(src.glob(f"{TOP}_stage*.v")), src / f"{TOP}.v"]
    if any((src / "memfiles").glob("*")):
        # The layer contract has no lookup tables (only adders, shifts, max, clipping).
        msg = "internal: the traced student uses lookup tables, which the Yosys flow omits"
        raise TriggerError(msg)
    # lookup_table.v reads a placeholder memory file at elaboration: leave it out.
    sources += [p for p in sorted((src / "static").glob("*.v")) if p.stem != "lookup_table"]
    script = rtl_dir / "synth" / "synth.ys"
    script.parent.mkdir(exist_ok=True)
    stats_path = script.parent / "stat.json"
    stats_path.unlink(missing_ok=True)
    script.write_text(_script([p for p in sources if p.is_file()], stats_path, rtl_dir))
    log = script.parent / "yosys.log"  # errors and warnings only (-q)
    with log.open("w") as out:
        done = subprocess.run(
            ["yosys", "-q", "-s", str(script.relative_to(rtl_dir))],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=rtl_dir,
        )
    if done.returncode != 0 or not stats_path.is_file():
        msg = f"yosys synth_xilinx failed (exit {done.returncode}): see {log}"
        raise TriggerError(msg)
    text = stats_path.read_text()
    stats = json.loads(text[text.find("{") :])
    design = stats.get("design") or next(iter(stats.get("modules", {}).values()), {})
    return count({k: int(v) for k, v in design.get("num_cells_by_type", {}).items()})
