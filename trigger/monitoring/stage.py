"""`trigger monitor`: has what a deployed firmware sees moved away from what it was trained on?

Nothing here needs labels. The reference is the run's held-out jets (its validation and test
splits: the firmware's scores on its training jets are biased by the fit); the new file is read
a chunk at a time, whatever its size, and runs through the fast emulator. Compared, each in
bins fixed by the reference (`trigger.monitoring.drift`):

    inputs        every input feature at every candidate rank (jets with a candidate there),
                  a jet-level feature (the candidate count) once
    scores        the firmware's output value of each class, and the top-class fractions
    observables   the jet columns the file has: pT, eta, mass, soft-drop mass, multiplicity

The output directory is built and sealed like every stage's; a monitor of the same firmware,
reference, file and settings is reused. A file drifts when any test flags it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trigger.artifacts import (
    EMIT,
    MONITOR,
    TRAIN,
    Artifact,
    current,
    data_identity,
    open_artifact,
    require_source,
    stage_output,
    training_data,
)
from trigger.config import CLASS_NAMES, load_recipe
from trigger.emulate import CHUNK_JETS
from trigger.errors import TriggerError
from trigger.inputs import JET_LEVEL_FEATURES, InputStage
from trigger.io import Log, write_json
from trigger.monitoring import drift

INPUT, SCORE, OBSERVABLE = "input", "score", "observable"
TOP_CLASS = "top class"
# Features never monitored: `present` is the mask the per-rank entries are selected by.
UNMONITORED = frozenset({"present"})


@dataclass(frozen=True)
class MonitorSettings:
    false_alarm: float = 0.01
    """Probability that a file of the reference's conditions is flagged (all tests together)."""
    power: float = 0.9
    """Probability of flagging a shift, for the jets each test needs to see it."""
    effect: float = 0.1
    """Shift size (Cohen's w) whose needed jets every test states (0.1: "small")."""
    bins: int = 20
    """Reference-quantile bins per quantity (fewer where the words tie)."""
    halvings: int = 20
    """Random halvings of the reference, each tested half against half: the false-alarm
    check the report shows."""
    chunk_jets: int = CHUNK_JETS

    def __post_init__(self) -> None:
        for name in ("false_alarm", "power"):
            if not 0 < getattr(self, name) < 1:
                msg = f"--{name.replace('_', '-')} must lie strictly between 0 and 1"
                raise TriggerError(msg)
        if self.effect <= 0:
            raise TriggerError("--effect must be positive")
        if self.bins < 2 or self.chunk_jets < 1 or self.halvings < 0:
            raise TriggerError("--bins must be at least 2 and --chunk-jets at least 1")


Values = dict[str, tuple[str, np.ndarray, np.ndarray]]  # name -> (kind, values, jet index)


def quantities(
    stage: InputStage,
    words: np.ndarray,
    logits: np.ndarray,
    observables: dict[str, np.ndarray],
) -> Values:
    """Every monitored quantity's values on these jets, with the jet each value comes from."""
    n = stage.n_constituents
    candidates = words[:, : 3 * n].reshape(len(words), n, 3)
    x = stage.apply(candidates, words[:, 3 * n :])
    present = candidates[..., 0] > 0
    jets = np.arange(len(words))
    values: Values = {}
    for i, feature in enumerate(stage.features):
        if feature in UNMONITORED:
            continue
        if feature in JET_LEVEL_FEATURES:
            values[feature] = (INPUT, x[:, 0, i], jets)
            continue
        for rank in range(n):
            kept = present[:, rank]
            values[f"{feature} #{rank + 1}"] = (INPUT, x[kept, rank, i], jets[kept])
    for c, name in enumerate(CLASS_NAMES):
        values[f"score {name}"] = (SCORE, logits[:, c], jets)
    values[TOP_CLASS] = (SCORE, logits.argmax(axis=1).astype(np.float64), jets)
    for name, column in observables.items():
        values[name] = (OBSERVABLE, column, jets)
    return values


def reference_edges(values: Values, bins: int) -> dict[str, np.ndarray]:
    """Each quantity's bins; the top class has one per class. Quantities whose reference
    fills a single bin cannot be tested and are left out."""
    edges = {
        name: np.arange(len(CLASS_NAMES) - 1) + 0.5
        if name == TOP_CLASS
        else drift.bin_edges(v, bins)
        for name, (_, v, _) in values.items()
    }
    return {name: e for name, e in edges.items() if len(e) > 0}


@dataclass
class Counted:
    """Histograms of the new file, filled a chunk at a time."""

    edges: dict[str, np.ndarray]
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    jets: int = 0

    def add(self, values: Values, jets: int) -> None:
        for name, e in self.edges.items():
            if name in values:
                h = drift.histogram(values[name][1], e)
                self.counts[name] = self.counts.get(name, 0) + h
        self.jets += jets


def halving_false_alarms(
    values: Values,
    jets: int,
    edges: dict[str, np.ndarray],
    threshold: float,
    halvings: int,
    seed: int = 0,
) -> int:
    """How many random halvings of the `jets` reference jets raise any flag, half against
    half."""
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(halvings):
        first = rng.permutation(jets) < jets // 2
        for name, e in edges.items():
            _, v, owners = values[name]
            side = first[owners]
            result = drift.compare(drift.histogram(v[side], e), drift.histogram(v[~side], e))
            if result.flagged(threshold):
                alarms += 1
                break
    return alarms


def _row(
    name: str,
    kind: str,
    result: drift.Comparison,
    threshold: float,
    settings: MonitorSettings,
    entries_per_jet: float,
) -> dict[str, Any]:
    def jets(effect: float) -> int | None:
        entries = drift.entries_needed(
            effect, result.dof, result.reference_entries, threshold, settings.power
        )
        return None if entries is None else int(np.ceil(entries / entries_per_jet))

    return {
        "name": name,
        "kind": kind,
        "statistic": result.statistic,
        "dof": result.dof,
        "p_value": result.p_value,
        "effect": result.effect,
        "flagged": result.flagged(threshold),
        "reference_entries": result.reference_entries,
        "entries": result.entries,
        "jets_to_flag_this_shift": jets(result.effect),
        "jets_to_flag_effect": jets(settings.effect),
    }


def summarise(
    reference: Values, reference_jets: int, counted: Counted, settings: MonitorSettings
) -> dict[str, Any]:
    """Every test's outcome, ranked by p-value, and the verdict. A quantity the new file
    lacks (a jet column it does not have) is not tested."""
    tested = {name: e for name, e in counted.edges.items() if name in counted.counts}
    threshold = drift.threshold(settings.false_alarm, len(tested))
    rows = []
    for name, e in tested.items():
        kind, values, _ = reference[name]
        result = drift.compare(drift.histogram(values, e), counted.counts[name])
        per_jet = max(result.entries, 1) / max(counted.jets, 1)
        rows.append(_row(name, kind, result, threshold, settings, per_jet))
    rows.sort(key=lambda r: (r["p_value"], -r["effect"]))
    alarms = halving_false_alarms(reference, reference_jets, tested, threshold, settings.halvings)
    flagged = [r["name"] for r in rows if r["flagged"]]
    return {
        "settings": asdict(settings),
        "tests": len(rows),
        "threshold": threshold,
        "flagged": flagged,
        "drift": bool(flagged),
        "jets": counted.jets,
        "reference_halvings": {"halvings": settings.halvings, "flagged": alarms},
        "quantities": rows,
    }


@dataclass
class _Plan:
    firmware: Artifact
    run: Artifact
    stage: InputStage
    reference_path: Path
    jets: int
    sources: dict[str, str]


def _plan(
    firmware_dir: Path,
    run_dir: Path,
    data_path: Path,
    settings: MonitorSettings,
    reference_data: Path | None,
) -> _Plan:
    from trigger.hls.stage import require_proven

    firmware = open_artifact(firmware_dir, EMIT)
    run = open_artifact(run_dir, TRAIN)
    require_source(firmware, "run", run)
    require_proven(firmware_dir)
    recipe = load_recipe(firmware_dir / "recipe.yaml")
    reference_path = training_data(run, recipe.data.path, reference_data)
    stage = InputStage.load(firmware_dir / "input_stage.json")
    from trigger.data.loader import readable_jets

    jets = readable_jets(data_path, stage.n_constituents, labelled=False)  # before any work
    settings_digest = json.dumps(asdict(settings), sort_keys=True)
    sources = {
        "firmware": firmware.identity,
        "run": run.identity,
        "reference": data_identity(reference_path),
        "data": data_identity(data_path),
        "settings": settings_digest,
    }
    return _Plan(firmware, run, stage, reference_path, jets, sources)


def _chunks(
    plan: _Plan, data_path: Path, run: Callable[[np.ndarray], np.ndarray], chunk_jets: int
) -> Iterator[tuple[Values, int]]:
    from trigger.data.loader import observable_chunks

    for words, observables in observable_chunks(data_path, plan.stage.n_constituents, chunk_jets):
        yield quantities(plan.stage, words, run(words), observables), len(words)


@dataclass
class Reference:
    """The run's held-out jets as the monitor compares with them."""

    values: Values
    jets: int
    edges: dict[str, np.ndarray]


def load_reference(
    firmware_dir: Path,
    stage: InputStage,
    data_path: Path,
    emulator: Callable[[np.ndarray], np.ndarray],
    bins: int,
) -> Reference:
    """Every quantity on the held-out jets of the run's data file, and its bins."""
    from trigger.data.loader import held_out_jets

    recipe = load_recipe(firmware_dir / "recipe.yaml")
    config = recipe.data.model_copy(update={"n_constituents": stage.n_constituents})
    held_out = held_out_jets(config, data_path)
    words = held_out.words
    values = quantities(stage, words, emulator(words), held_out.observables)
    return Reference(values, len(held_out), reference_edges(values, bins))


@dataclass
class Monitoring:
    out_dir: Path
    summary: dict[str, Any]


def monitor(
    firmware_dir: str | Path,
    run_dir: str | Path,
    data_path: str | Path,
    out_dir: str | Path,
    *,
    settings: MonitorSettings | None = None,
    reference_data: str | Path | None = None,
    replace: bool = False,
    progress: bool = True,
    log: Log = print,
) -> Monitoring:
    """Compare `data_path` with the run's held-out jets through the firmware; write
    monitor.json, report.md, report.html and PNGs to `out_dir`."""
    from tqdm import tqdm

    from trigger.hls.fast import load_fast_emulator
    from trigger.monitoring import report

    settings = settings or MonitorSettings()
    firmware_dir, run_dir, data_path, out_dir = map(
        Path, (firmware_dir, run_dir, data_path, out_dir)
    )
    reference_data = Path(reference_data) if reference_data else None
    plan = _plan(firmware_dir, run_dir, data_path, settings, reference_data)
    if current(out_dir, MONITOR, plan.sources):
        log(f"{out_dir} is up to date")
        return Monitoring(out_dir, json.loads((out_dir / "monitor.json").read_text()))
    inputs = [firmware_dir, run_dir, data_path, plan.reference_path]
    with stage_output(out_dir, MONITOR, plan.sources, inputs=inputs, replace=replace) as tmp:
        run = load_fast_emulator(firmware_dir)
        reference = load_reference(
            firmware_dir, plan.stage, plan.reference_path, run, settings.bins
        )
        counted = Counted(reference.edges)
        quiet = None if progress else True
        with tqdm(total=plan.jets, unit="jet", desc="monitoring", disable=quiet) as bar:
            for values, jets in _chunks(plan, data_path, run, settings.chunk_jets):
                counted.add(values, jets)
                bar.update(jets)
        if counted.jets == 0:
            msg = f"{data_path}: holds no jets"
            raise TriggerError(msg)
        summary = summarise(reference.values, reference.jets, counted, settings)
        summary |= {
            "firmware": str(firmware_dir),
            "reference": {"data": str(plan.reference_path), "jets": reference.jets},
            "data": str(data_path),
        }
        plots = report.plots(reference.values, counted, summary, tmp)
        write_json(tmp / "monitor.json", summary)
        report.write(summary, plots, tmp)
    return Monitoring(out_dir, summary)
