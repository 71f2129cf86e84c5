"""`trigger monitor`'s false-alarm rate on nominal jets, and the jets it needs to flag shifts.

    .venv/bin/python scripts/bench_monitor.py --run runs/default --firmware firmware/default \\
        --nominal data/nominal.h5 --shifted ue-off=data/ue_off.h5 --scale-pt 1.05

Every sample is read once and each of its jets put through the firmware's fast emulator; then,
for each size n of a ladder, `--draws` random subsets of n jets are monitored as `trigger
monitor` monitors a file (the same bins, tests and family threshold, against the run's held-out
jets). The table gives the fraction of subsets flagged: on the nominal sample (another
generator seed, the run's conditions) that is the false-alarm rate, to be read against the
stated one; on a shifted sample it is the power to see that shift with n jets. `pt xS` is the
nominal sample with every candidate's and the jet's pT word, and the jet's pT and masses,
scaled by S: a calibration drift. Subsets of one file overlap at large n, so neighbouring
cells are correlated; the error column is binomial.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

LADDER = (250, 500, 1000, 2000, 4000, 8000, 16000, 32000)


def read_sample(path: Path, n_constituents: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    from trigger.data.loader import observable_chunks

    parts = list(observable_chunks(path, n_constituents, 50_000))
    words = np.concatenate([w for w, _ in parts])
    observables = {k: np.concatenate([o[k] for _, o in parts]) for k in parts[0][1]}
    return words, observables


def scaled_pt(words: np.ndarray, observables: dict, n: int, scale: float):
    """The sample as a detector whose pT scale moved by `scale` would deliver it."""
    from trigger.inputs import PT_WORD

    words = words.copy()
    pt = words[:, 0 : 3 * n : 3]
    words[:, 0 : 3 * n : 3] = np.minimum(np.rint(pt * scale), PT_WORD.high)
    words[:, 3 * n] = np.minimum(np.rint(words[:, 3 * n] * scale), PT_WORD.high)
    energies = ("pt", "mass", "mass_mmdt")
    moved = {k: v * scale if k in energies else v for k, v in observables.items()}
    return words, moved


def monitored(reference, values, chosen: np.ndarray, settings) -> dict:
    """`trigger monitor`'s summary of the chosen jets of a sample."""
    from trigger.monitoring import drift
    from trigger.monitoring.stage import Counted, summarise

    counted = Counted(reference.edges, jets=int(chosen.sum()))
    for name, e in reference.edges.items():
        if name in values:
            v, owners = values[name][1], values[name][2]
            counted.counts[name] = drift.histogram(v[chosen[owners]], e)
    return summarise(reference.values, reference.jets, counted, settings)


def flagged_fraction(reference, values, jets: int, n: int, draws: int, settings, rng) -> float:
    flagged = 0
    for _ in range(draws):
        chosen = np.zeros(jets, bool)
        chosen[rng.choice(jets, n, replace=False)] = True
        flagged += monitored(reference, values, chosen, settings)["drift"]
    return flagged / draws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--firmware", type=Path, required=True)
    parser.add_argument("--nominal", type=Path, required=True, help="another seed, same settings")
    parser.add_argument("--shifted", action="append", default=[], metavar="NAME=FILE")
    parser.add_argument("--scale-pt", type=float, action="append", default=[], metavar="S")
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--false-alarm", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()

    from trigger.artifacts import EMIT, TRAIN, open_artifact, require_source, training_data
    from trigger.config import load_recipe
    from trigger.hls.fast import load_fast_emulator
    from trigger.inputs import InputStage
    from trigger.monitoring.stage import (
        MonitorSettings,
        load_reference,
        quantities,
    )

    start = time.perf_counter()
    firmware, run = open_artifact(args.firmware, EMIT), open_artifact(args.run, TRAIN)
    require_source(firmware, "run", run)
    stage = InputStage.load(args.firmware / "input_stage.json")
    emulator = load_fast_emulator(args.firmware)
    settings = MonitorSettings(false_alarm=args.false_alarm, halvings=0)
    path = training_data(run, load_recipe(args.firmware / "recipe.yaml").data.path)
    reference = load_reference(args.firmware, stage, path, emulator, settings.bins)
    n = stage.n_constituents
    words, observables = read_sample(args.nominal, n)
    samples = {"nominal (another seed)": (words, observables)}
    for scale in args.scale_pt:
        samples[f"pt x{scale:g}"] = scaled_pt(words, observables, n, scale)
    for item in args.shifted:
        name, _, file = item.partition("=")
        samples[name] = read_sample(Path(file), n)
    rng = np.random.default_rng(0)
    sizes = [s for s in LADDER if s <= max(len(w) for w, _ in samples.values())]
    lines = [
        f"Reference: {reference.jets:,} held-out jets of {path}; {args.draws} subsets per cell; "
        f"family false-alarm rate {args.false_alarm:g}. Fraction of subsets flagged:\n",
        "| sample | jets in file | lowest p on the whole file (Cohen's w) | "
        + " | ".join(f"{s:,}" for s in sizes)
        + " |",
        "|---|---|---|" + "---|" * len(sizes),
    ]
    for name, (w, o) in samples.items():
        values = quantities(stage, w, emulator(w), o)
        cells = [
            f"{flagged_fraction(reference, values, len(w), s, args.draws, settings, rng):.2f}"
            if s <= len(w)
            else ""
            for s in sizes
        ]
        top = monitored(reference, values, np.ones(len(w), bool), settings)["quantities"][0]
        first = f"{top['name']} ({top['effect']:.3f})"
        lines.append(f"| {name} | {len(w):,} | {first} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
