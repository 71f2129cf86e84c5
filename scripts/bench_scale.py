"""Time and peak memory of `trigger emulate` and `trigger validate` on a million jets.

    .venv/bin/python scripts/bench_scale.py RUN FIRMWARE DATA [--copies 10] [--out runs/scale]

DATA (e.g. the 100,000-jet L1 sample) is tiled COPIES times into OUT/tiled.h5 (its leading 32
candidates per jet): the same jets repeated, so its accuracies say nothing new; the figures are
the wall time and peak resident memory of each command on a file that size, the test split
of `validate` being a fifth of it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TRIGGER = str(Path(sys.executable).with_name("trigger"))


def tile(data: Path, copies: int, out: Path) -> None:
    from trigger.data.layout import OpenedJets, write_jets_file

    with OpenedJets(data) as f:
        constituents, jets = f.constituents[:, :32, :], f.jets[()]
    write_jets_file(out, np.tile(constituents, (copies, 1, 1)), np.tile(jets, (copies, 1)))


def timed(*args: str) -> tuple[float, float]:
    """Wall seconds and peak resident GB of one trigger command (exit 1, a failed gate, is
    a result like any other)."""
    start = time.perf_counter()
    child = subprocess.Popen([TRIGGER, *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 1):
        sys.exit(f"trigger {args[0]} failed with exit code {child.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("firmware", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/scale"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    big = args.out / "tiled.h5"
    # Tiled in a process of its own: a child forked from a parent holding the arrays would
    # start its peak-memory count at the parent's size.
    maker = multiprocessing.get_context("spawn").Process(
        target=tile, args=(args.data, args.copies, big)
    )
    maker.start()
    maker.join()
    from trigger.data.layout import OpenedJets

    with OpenedJets(big) as f:
        print(f"{big}: {len(f):,} jets")
    emulate = timed("emulate", str(args.firmware), "--data", str(big),
                    "--out", str(args.out / "predictions.h5"), "--force")  # fmt: skip
    print(f"trigger emulate (fast):  {emulate[0]:6.1f} s, peak {emulate[1]:.2f} GB")
    validate = timed("validate", str(args.run), "--firmware", str(args.firmware), "--data",
                     str(big), "--out", str(args.out / "validation"), "--force")  # fmt: skip
    print(f"trigger validate:        {validate[0]:6.1f} s, peak {validate[1]:.2f} GB")


if __name__ == "__main__":
    main()
