"""The sweep's driver: Optuna asks for designs, Dask trains them, Optuna is told the results.

Ask-and-tell keeps the study's storage with the driver: workers never open it, so a SQLite file
in the output directory serves a cluster of any size. The driver keeps as many trials in flight
as the cluster has worker threads.

Resumption: a trial's Optuna state and its directory `trials/NNNN/` are both keyed by the
trial number. A trial left running by a killed driver is submitted again under its own number;
its training is skipped when its run directory is complete, and its figures are reused when
they were written. Finished trials (completed or failed) are never run again.
"""

from __future__ import annotations

import json
import traceback
import warnings
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from trigger.config import digest
from trigger.errors import TriggerError
from trigger.io import Log, atomic_path, check_writable, only_writer
from trigger.sweep.spec import SweepSpec, fixed_overrides, overrides
from trigger.sweep.trial import FIGURES, TrialTask, run_trial

STUDY_NAME = "sweep"
SWEEP_RECORD = "sweep.json"
TRIAL_RECORD = "trial.json"
ERROR = "error.txt"
# Proposals in a row that repeat an earlier trial before the sampler is taken at its word.
MAX_REPEATS = 50


@dataclass(frozen=True)
class SweepLayout:
    """Where a sweep's outputs live under its output directory."""

    out: Path

    @property
    def trials(self) -> Path:
        return self.out / "trials"

    @property
    def references(self) -> Path:
        return self.out / "references"

    @property
    def teachers(self) -> Path:
        return self.out / "teachers"

    def trial(self, number: int) -> Path:
        return self.trials / f"{number:04d}"

    def storage(self, spec: SweepSpec) -> str:
        return spec.storage or f"sqlite:///{(self.out / 'study.db').resolve()}"


# --- the search space in Optuna's terms -------------------------------------------------------


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _encoded(choices: tuple[Any, ...]) -> bool:
    """Optuna's categorical choices are scalars: lists (layer widths) travel as JSON text."""
    return not all(_scalar(c) for c in choices)


def distributions(spec: SweepSpec) -> dict[str, Any]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for name, d in spec.space.items():
        if d.choices is not None:
            choices = [json.dumps(c) for c in d.choices] if _encoded(d.choices) else d.choices
            out[name] = CategoricalDistribution(list(choices))
        elif d.integer:
            out[name] = IntDistribution(int(d.low), int(d.high), log=d.log, step=int(d.step or 1))
        else:
            out[name] = FloatDistribution(d.low, d.high, log=d.log, step=d.step)
    return out


def decoded(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as recipe values (a stepped float as its decimal: 0.6, not
    0.6000000000000001)."""
    out = {}
    for name, value in params.items():
        choices = spec.space[name].choices
        if choices and _encoded(choices):
            value = json.loads(value)
        out[name] = round(value, 12) if isinstance(value, float) else value
    return out


def _grid(spec: SweepSpec) -> list[dict[str, Any]]:
    """The grid's points in a seeded order, as Optuna parameters; the first `trials` of them
    are the sweep's trials."""
    encoded = {
        name: list(distribution.choices) if spec.space[name].choices else spec.space[name].grid()
        for name, distribution in distributions(spec).items()
    }
    points = [dict(zip(encoded, values, strict=True)) for values in product(*encoded.values())]
    order = np.random.default_rng(spec.seed).permutation(len(points))
    return [points[i] for i in order[: spec.trials]]


def _sampler(spec: SweepSpec) -> Any:
    import optuna

    # A grid is enqueued point by point (see open_study): Optuna's GridSampler stops its study
    # from inside, which ask-and-tell does not allow.
    if spec.sampler in ("grid", "random"):
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.sampler == "nsga2":
        population = max(4, min(50, spec.trials // 3))
        return optuna.samplers.NSGAIISampler(population_size=population, seed=spec.seed)
    with warnings.catch_warnings():
        # constant_liar is marked experimental; it keeps parallel trials from all asking
        # for the same point while the first ones are still running.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=spec.seed, constant_liar=True)


def open_study(spec: SweepSpec, layout: SweepLayout) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            study_name=STUDY_NAME,
            storage=layout.storage(spec),
            directions=spec.directions,
            sampler=_sampler(spec),
            load_if_exists=True,
        )
    except (ImportError, ValueError) as error:
        msg = f"cannot open the sweep's storage {layout.storage(spec)}: {error}"
        raise TriggerError(msg) from None
    if spec.sampler == "grid":
        # A point enqueued but not yet asked holds its parameters as "fixed_params".
        queued = [
            trial.params or trial.system_attrs.get("fixed_params")
            for trial in study.get_trials(deepcopy=False)
        ]
        for point in _grid(spec):
            if point not in queued:
                study.enqueue_trial(point)
    return study


# --- the output directory ---------------------------------------------------------------------


def sweep_identity(spec: SweepSpec, base_tree: dict[str, Any]) -> dict[str, Any]:
    """What the output directory's trials were made from: a rerun must match it to resume.
    The budget is left out, so raising `trials` and rerunning extends a finished sweep."""
    search = spec.model_dump(mode="json", exclude={"cluster", "trials"})
    return {"sweep": digest(search), "base": digest(base_tree)}


def claim_output(layout: SweepLayout, identity: dict[str, Any]) -> None:
    """Make the output directory, or check that it holds this same sweep (to resume it)."""
    record = layout.out / SWEEP_RECORD
    check_writable(layout.out)
    if record.is_file():
        if json.loads(record.read_text()) != identity:
            msg = (
                f"{layout.out} holds another sweep (its sweep file or base recipe changed): "
                "pick another --out to keep both"
            )
            raise TriggerError(msg)
        return
    if layout.out.exists() and any(layout.out.iterdir()):
        msg = f"{layout.out} exists and holds no sweep: pick another --out"
        raise TriggerError(msg)
    layout.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(record) as tmp:
        tmp.write_text(json.dumps(identity, indent=2) + "\n")


# --- running trials ---------------------------------------------------------------------------


def _task(spec: SweepSpec, directory: Path, recipe: Path, extra: list[str], data: Path, layout):
    return TrialTask(
        directory=directory.resolve(),
        recipe=recipe.resolve(),
        overrides=(*fixed_overrides(spec), *extra),
        data=data.resolve(),
        teacher_cache=layout.teachers.resolve(),
    )


def _record_trial(task: TrialTask, params: dict[str, Any]) -> None:
    task.directory.mkdir(parents=True, exist_ok=True)
    record = {"recipe": str(task.recipe), "overrides": list(task.overrides), "params": params}
    with atomic_path(task.directory / TRIAL_RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def error_line(error: BaseException) -> str:
    """A failed trial's error in one line: a TriggerError's own words, else type and message."""
    if isinstance(error, TriggerError):
        return str(error)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class _Runner:
    """Dask futures and what each one is: a trial number or a reference name."""

    def __init__(self, client: Any, bar: Any) -> None:
        from distributed import as_completed

        self.client, self.bar = client, bar
        self.pending: dict[Any, tuple[str, int | str, TrialTask]] = {}
        self.completed = as_completed()

    def submit(self, kind: str, label: int | str, task: TrialTask) -> None:
        future = self.client.submit(run_trial, task, pure=False, key=f"{kind}-{label}-{id(task)}")
        self.pending[future] = (kind, label, task)
        self.completed.add(future)

    def next(self) -> tuple[str, int | str, dict[str, Any] | None, str | None]:
        """The next finished future: its kind, label, figures or error line (the traceback
        goes to the trial's error.txt)."""
        future = next(self.completed)
        kind, label, task = self.pending.pop(future)
        self.bar.update(1)
        try:
            return kind, label, future.result(), None
        except Exception as error:
            line = error_line(error)
            detail = "".join(traceback.format_exception(error))
            (task.directory / ERROR).write_text(f"{line}\n\n{detail}")
            return kind, label, None, line

    def in_flight(self, kind: str) -> int:
        return sum(1 for k, _, _ in self.pending.values() if k == kind)


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))


def _repeats(study: Any, trial: Any) -> bool:
    """Whether `trial` asks for the parameters of a trial already run or running."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)
    return any(
        other.params == trial.params and other.number != trial.number
        for other in study.get_trials(deepcopy=False, states=states)
    )


def _tell(study: Any, spec: SweepSpec, number: int, figures: dict | None) -> None:
    """Figures and errors live in the trial's directory; Optuna keeps what the sampler needs."""
    from optuna.trial import TrialState

    if figures is None:
        study.tell(number, state=TrialState.FAIL)
    else:
        study.tell(number, [figures[name] for name in spec.objectives])


def _ask(study: Any, distribution: dict[str, Any]) -> Any:
    """The sampler's next design that no trial has run or is running.

    Samplers may propose a design they have tried; training it again would cost a trial and
    tell them nothing. After MAX_REPEATS such proposals in a row the next one is taken.
    """
    from optuna.trial import TrialState

    for _ in range(MAX_REPEATS):
        trial = study.ask(distribution)
        if not _repeats(study, trial):
            return trial
        study.tell(trial, state=TrialState.PRUNED)
    return study.ask(distribution)


def _trial_task(spec: SweepSpec, layout: SweepLayout, number: int, params: dict, data: Path):
    return _task(spec, layout.trial(number), spec.recipe, overrides(params), data, layout)


def run_sweep(spec: SweepSpec, out: Path, data: Path, client: Any, log: Log = print) -> Any:
    """Run (or finish) the sweep into `out`; returns the Optuna study."""
    from optuna.trial import TrialState
    from tqdm import tqdm

    from trigger.cluster import worker_slots

    layout = SweepLayout(out)
    with only_writer(out, f"another `trigger sweep` is running into {out}: wait for it to end"):
        claim_output(layout, sweep_identity(spec, {"recipe": spec.recipe.read_text()}))
        study = open_study(spec, layout)
        budget = len(_grid(spec)) if spec.sampler == "grid" else spec.trials
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        references = [
            r for r in spec.references if not (layout.references / r.stem / FIGURES).is_file()
        ]
        left = budget - _finished(study)
        log(
            f"sweep: {budget} trials, {left} to run ({len(stale)} interrupted, resumed); "
            f"{len(references)} references to train; outputs in {out}"
        )
        distribution = distributions(spec)
        with tqdm(total=max(left, 0) + len(references), unit="trial", desc="sweep") as bar:
            runner = _Runner(client, bar)
            for reference in references:
                task = _task(spec, layout.references / reference.stem, reference, [], data, layout)
                _record_trial(task, {})
                runner.submit("reference", reference.stem, task)
            for trial in stale:  # asked by a killed driver, maybe not even recorded
                params = decoded(spec, trial.params)
                task = _trial_task(spec, layout, trial.number, params, data)
                _record_trial(task, params)
                runner.submit("trial", trial.number, task)
            while True:
                while _finished(study) + runner.in_flight("trial") < budget and len(
                    runner.pending
                ) < worker_slots(client):
                    trial = _ask(study, distribution)
                    params = decoded(spec, trial.params)
                    task = _trial_task(spec, layout, trial.number, params, data)
                    _record_trial(task, params)
                    runner.submit("trial", trial.number, task)
                if not runner.pending:
                    break
                kind, label, figures, error = runner.next()
                if error:
                    bar.write(f"{kind} {label} failed: {error}")
                if kind == "trial":
                    _tell(study, spec, int(label), figures)
    return study


def confirm_front(front: list[dict[str, Any]], out: Path, data: Path, client: Any, log: Log):
    """Verilator and Yosys on each front member (`measured.json` beside its figures)."""
    from distributed import as_completed

    from trigger.sweep.trial import confirm_design

    log(f"sweep: confirming {len(front)} front members with Verilator and Yosys")
    futures = {
        client.submit(
            confirm_design, out / "trials" / f"{m['number']:04d}", data.resolve(), pure=False
        ): m["number"]
        for m in front
    }
    for future in as_completed(futures):
        try:
            measured = future.result()
        except Exception as error:
            log(f"trial {futures[future]}: not confirmed: {error_line(error)}")
            continue
        log(
            f"trial {futures[future]}: {measured['lut']} LUT, {measured['latency_ns']:g} ns "
            "(Yosys, Verilator)"
        )


# The first words of every recipe file `trigger recipe from-trial` writes.
FROM_TRIAL_MARK = "# trigger recipe from-trial: sweep trial"


def written_from_trial(path: Path) -> bool:
    """Whether the recipe file at `path` is one `trigger recipe from-trial` wrote."""
    with path.open(errors="replace") as handle:
        return handle.readline().startswith(FROM_TRIAL_MARK)


def trial_recipe(directory: Path) -> str:
    """A trial's recipe file: its base recipe's settings with the trial's overrides."""
    import yaml

    from trigger.config import recipe_from_dict, recipe_tree

    record_file = directory / TRIAL_RECORD
    if not record_file.is_file():
        msg = f"{directory}: not a sweep trial (no {TRIAL_RECORD})"
        raise TriggerError(msg)
    record = json.loads(record_file.read_text())
    tree = recipe_tree(record["recipe"], record["overrides"])
    tree["name"] = f"{tree['name']}-{directory.name}"
    recipe_from_dict(tree, source=str(record_file))  # refuse a trial whose recipe is invalid
    changes = ", ".join(record["overrides"]) or "no changes"
    header = f"{FROM_TRIAL_MARK} {directory}: {Path(record['recipe']).name} with {changes}\n"
    return header + yaml.safe_dump(tree, sort_keys=False)
