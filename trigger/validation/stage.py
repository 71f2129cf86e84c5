"""`trigger validate`: teacher, float reference, QKeras student and firmware on the test split."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigger.artifacts import (
    EMIT,
    TRAIN,
    VALIDATE,
    Artifact,
    check_output,
    current,
    data_identity,
    open_artifact,
    read_artifact,
    require_source,
    stage_output,
)
from trigger.config import Recipe, ValidationConfig, load_recipe, save_recipe
from trigger.data.loader import (
    JetSample,
    load_test_split,
    read_jets,
    readable_jets,
    require_every_class,
)
from trigger.errors import TriggerError
from trigger.inputs import InputStage
from trigger.io import Log, require_file, write_json
from trigger.validation import hardware as hw
from trigger.validation import report
from trigger.validation.baseline import FEATURES as BASELINE_FEATURES
from trigger.validation.baseline import Baseline, baseline_logits, cached_baseline
from trigger.validation.gates import Measurement, evaluate_gates, failed, overall, undecided
from trigger.validation.metrics import (
    SIGNALS,
    classification_summary,
    one_vs_rest_roc,
    paired_accuracy_difference,
    top_class_agreement,
)
from trigger.validation.observables import compare_selections, sculpting_curves
from trigger.validation.shift import Evaluated, shift_summary
from trigger.validation.view import candidate_view

FLOAT_REFERENCE_DIR = "float_reference"


@dataclass
class Validation:
    out_dir: Path
    metrics: dict[str, Any]

    @property
    def failed_gates(self) -> list[str]:
        return failed(self.metrics["gates"])


# The jets a stage evaluates, through a given input stage (each model has its own contract).
Sampler = Callable[[InputStage], JetSample]


def predictions(
    run_dir: Path,
    firmware_dir: Path,
    sample: Sampler,
    engine: str = "fast",
    baseline: object | None = None,
) -> tuple[dict[str, np.ndarray], JetSample]:
    """Logits of every predictor on the same jets, each under its own input contract; the
    firmware's from the named emulator (`trigger.emulate.ENGINES`); the baseline's, when
    given, from the jets' mass, soft-drop mass and candidate count.

    The directories are ones `open_artifact` has checked: every file they need is there.
    """
    from trigger.emulate import engine as emulator
    from trigger.taggers import load_model, predict

    test = sample(InputStage.load(run_dir / "input_stage.json"))
    outputs: dict[str, np.ndarray] = {}
    if baseline is not None:
        outputs["baseline"] = baseline_logits(baseline, test.observables, "evaluation jets")
    if (run_dir / "teacher.h5").is_file():
        teacher_x = sample(InputStage.load(run_dir / "teacher_input_stage.json")).x
        outputs["teacher"] = predict(load_model(run_dir / "teacher.h5"), teacher_x)
    outputs["float"] = predict(load_model(run_dir / "float.h5"), test.x)
    outputs["student"] = predict(load_model(run_dir / "student.h5"), test.x)
    outputs["firmware"] = emulator(firmware_dir, engine)(test.words)
    return outputs, test


def evaluated(outputs: dict[str, np.ndarray], jets: JetSample, features: tuple[str, ...]):
    """The sample as shift reporting compares it: each input feature over present candidates."""
    present = jets.candidates[..., 0] > 0
    inputs = {name: jets.x[..., i][present] for i, name in enumerate(features)}
    return Evaluated(outputs, jets.labels, jets.observables, inputs)


def test_split_sampler(recipe: Recipe, data_path: str | Path, test_jets: int | None) -> Sampler:
    """The first `test_jets` jets of the test split (all of it when None)."""

    def sample(stage: InputStage) -> JetSample:
        test = load_test_split(recipe.data, stage, data_path)
        if test_jets is None:
            return test
        if test_jets > len(test):
            msg = (
                f"--test-jets {test_jets} is more than the {len(test)} jets of the test split "
                f"of {data_path}"
            )
            raise TriggerError(msg)
        return test.take(np.arange(test_jets))

    return sample


def file_sampler(path: str | Path, test_jets: int | None) -> Sampler:
    """Every jet of a file (none of it was trained on), or its first `test_jets`."""

    def sample(stage: InputStage) -> JetSample:
        jets = read_jets(path, stage.n_constituents, test_jets)
        jets.x = stage.apply(jets.candidates, jets.jet)
        return jets

    return sample


def _training_runs(runs_dir: Path) -> dict[str, Path]:
    """Data identity -> a run trained on it, over the sealed runs in `runs_dir`."""
    runs = {}
    for folder in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else ():
        artifact = read_artifact(folder)
        if artifact is not None and artifact.stage == TRAIN and "data" in artifact.sources:
            runs.setdefault(artifact.sources["data"], folder)
    return runs


def _shard_seeds(path: Path) -> set[int]:
    from trigger.data.generate import read_manifest

    manifest = read_manifest(path) or {}
    return {int(shard["seed"]) for shard in manifest.get("shards", [])}


def check_unseen(path: Path, run: Artifact, training_path: Path) -> str:
    """Refuse an evaluation file that any run beside `run` trained on, or whose generator
    seeds repeat those of the training data (the same seed makes the same jets); its identity
    otherwise."""
    identity = data_identity(path)
    trained = _training_runs(run.path.resolve().parent).get(identity)
    if trained is not None:
        msg = f"{path} is the training data of {trained}: evaluate on jets no run trained on"
        raise TriggerError(msg)
    shared = _shard_seeds(path) & _shard_seeds(training_path)
    if shared:
        msg = (
            f"{path} repeats generator seeds of the training data {training_path} "
            f"({len(shared)} shards): its jets are training jets; generate it with another --seed"
        )
        raise TriggerError(msg)
    return identity


def evaluation_sampler(
    run: Artifact, recipe: Recipe, training_path: Path, test_jets: int | None
) -> tuple[Sampler, dict]:
    """The jets validation evaluates: every jet of `validation.data` when set to a file the run
    did not train on (checked), else the run's test split; and a record of which."""
    path = recipe.validation.data
    if path is not None and data_identity(path) != run.sources.get("data"):
        identity = check_unseen(Path(path), run, training_path)
        held = readable_jets(path, recipe.data.n_constituents)
        if test_jets is not None and test_jets > held:
            msg = f"--test-jets {test_jets} is more than the {held} jets of {path}"
            raise TriggerError(msg)
        require_every_class(path, "the evaluation file", limit=test_jets)
        record = {"data": str(path), "identity": identity, "jets_from": "every jet of"}
        return file_sampler(path, test_jets), record
    path = Path(path or training_path)
    require_every_class(path, "the test split", recipe.data, test_jets)
    record = {"data": str(path), "identity": data_identity(path), "jets_from": "the test split of"}
    return test_split_sampler(recipe, path, test_jets), record


def _exact_reference(outputs: dict[str, np.ndarray], proof: dict, firmware_dir: Path, words):
    """What the firmware must equal bit for bit: the student in Keras where its float32 sums
    are exact, else the plan's arithmetic in exact float64 (as emit-hls proved it; with
    `--engine fast`, which is that arithmetic, the comparison holds by construction)."""
    if proof["reference"] == "keras-float32":
        return outputs["student"]
    from trigger.hls.fast import load_fast_emulator

    return load_fast_emulator(firmware_dir)(words)


def _classification(
    outputs: dict[str, np.ndarray], labels: np.ndarray, recipe: Recipe, exact: np.ndarray
) -> dict:
    efficiencies = recipe.validation.signal_efficiencies
    return {
        "test_jets": len(labels),
        "predictors": {
            name: classification_summary(logits, labels, efficiencies)
            for name, logits in outputs.items()
        },
        "firmware_float_top_class_agreement": top_class_agreement(
            outputs["firmware"], outputs["float"]
        ),
        "firmware_student_top_class_agreement": top_class_agreement(
            outputs["firmware"], outputs["student"]
        ),
        "firmware_student_bit_exact_fraction": float(
            np.mean(np.all(outputs["firmware"] == exact, axis=1))
        ),
    }


def _hardware(firmware_dir: Path, recipe: Recipe, n_constituents: int) -> dict:
    """Student and float reference: measured figures where they exist, else da4ml's estimate;
    the estimates of both always, and measured over estimate where both exist."""
    figures: dict[str, Any] = {}
    for key, project in (
        ("compressed", firmware_dir),
        ("float_reference", firmware_dir / FLOAT_REFERENCE_DIR),
    ):
        estimate = hw.read_estimate(project)
        figures[key] = hw.from_reports(project) or estimate
        figures[f"{key}_estimate"] = estimate
    measured = figures["compressed"] is not figures["compressed_estimate"]
    figures["measured_over_estimate"] = (
        hw.ratios(figures["compressed"], figures["compressed_estimate"]) if measured else None
    )
    figures["ratio"] = hw.ratios(figures["compressed"], figures["float_reference"])
    # The firmware starts from L1 words: its input stage is inside every figure above.
    figures["inputs"] = {"constituents": n_constituents, "features": list(recipe.data.features)}
    return figures


def _plots(outputs, test: JetSample, metrics: dict, recipe: Recipe, out: Path) -> dict[str, str]:
    labels = test.labels
    efficiency = recipe.validation.working_point_efficiency
    plots = {"roc": "roc.png", "efficiency": "efficiency.png", "hardware": "hardware.png"}
    report.plot_roc({n: one_vs_rest_roc(o, labels) for n, o in outputs.items()}, out / "roc.png")
    compared = {k: outputs[k] for k in ("float", "student", "firmware")}
    for target in SIGNALS:
        name = f"observables_{target}.png"
        report.plot_observables(compared, labels, test.observables, target, efficiency, out / name)
        plots[f"observables_{target}"] = name
    report.plot_efficiency(metrics["observables"]["efficiency_curves"], out / "efficiency.png")
    report.plot_hardware(metrics["hardware"], out / "hardware.png")
    return plots


def validate_sources(run: Artifact, firmware: Artifact, recipe: Recipe, data_path: str | Path):
    """What a report is made from: the run, its firmware, the gates and the data."""
    return {
        "run": run.identity,
        "firmware": firmware.identity,
        "recipe": recipe.digest("validation"),
        "data": data_identity(data_path),
    }


def _gate_figures(outputs, labels, observables: dict, hardware: dict, shift: dict, exact: float):
    """What each gate reads; statistical figures with the jets and uncertainty behind them."""
    drop, variance = paired_accuracy_difference(outputs["float"], outputs["firmware"], labels)
    return {
        "accuracy_drop": Measurement(drop, float(np.sqrt(variance)), len(labels)),
        "observable_distance": Measurement(
            observables["max_distance"], jets=observables["jets"],
            jets_needed=observables["jets_needed"],
        ),
        "bit_exact_fraction": exact,
        "latency_ns": hardware["compressed"].get("latency_ns"),
        "lut": hardware["compressed"].get("lut"),
        "dsp": hardware["compressed"].get("dsp"),
        "shift_degradation": [
            Measurement(v["degradation"], v["uncertainty"], v["nominal_jets"])
            for v in shift.values()
        ],
    }  # fmt: skip


def _decision(gates: dict, validation: ValidationConfig) -> dict:
    return {
        "verdict": overall(gates),
        "failed": failed(gates),
        "undecided": undecided(gates),
        "allow_undecided": validation.allow_undecided,
        "confidence": validation.confidence,
    }


def _baseline(run: Artifact, recipe: Recipe, training_path: Path, run_dir: Path, log: Log):
    """The cached baseline of the run's training split (trained on first use)."""
    if data_identity(training_path) != run.sources.get("data"):
        msg = (
            f"{training_path} is not the data {run.path} was trained on: the baseline is "
            "trained on the run's training split (pass the evaluation file with --data)"
        )
        raise TriggerError(msg)
    cache = run_dir.resolve().parent / ".baselines"
    return cached_baseline(
        recipe.data, recipe.quantization.input, training_path, run.sources["data"], cache, log
    )


def _baseline_record(baseline: Baseline, outputs: dict[str, np.ndarray], labels) -> dict:
    difference, variance = paired_accuracy_difference(
        outputs["firmware"], outputs["baseline"], labels
    )
    return {
        "features": list(BASELINE_FEATURES),
        "cache": str(baseline.folder),
        "trained_now": baseline.trained,
        "firmware_minus_baseline": {"value": difference, "uncertainty": float(np.sqrt(variance))},
    }


@dataclass(frozen=True)
class _Plan:
    """What a report is made from, checked before any work."""

    run: Artifact
    recipe: Recipe
    proof: dict[str, Any]  # the firmware's emulation.json
    data_path: Path
    sample: Sampler
    evaluation: dict[str, Any]
    sources: dict[str, str]
    inputs: list[Path]


def _plan(
    run_dir: Path,
    firmware_dir: Path,
    data_path: str | Path | None,
    validation: ValidationConfig | None,
    test_jets: int | None,
    engine: str,
    shifted: dict[str, Path],
) -> _Plan:
    from trigger.hls.stage import require_proven

    run = open_artifact(run_dir, TRAIN)
    firmware = open_artifact(firmware_dir, EMIT)
    require_source(firmware, "run", run)
    proof = require_proven(firmware_dir)  # not when its exactness checks failed at emit-hls
    recipe = load_recipe(firmware_dir / "recipe.yaml")
    if validation is not None:
        recipe = recipe.model_copy(update={"validation": validation})
    data_path = require_file(data_path or recipe.data.path, "the run's data file")
    sample, evaluation = evaluation_sampler(run, recipe, data_path, test_jets)
    sources = validate_sources(run, firmware, recipe, data_path)
    sources.update(
        {"test_jets": str(test_jets), "engine": engine, "evaluation": evaluation["identity"]}
        | {f"shifted {name}": data_identity(path) for name, path in shifted.items()}
    )
    inputs = [run_dir, firmware_dir, data_path, Path(evaluation["data"]), *shifted.values()]
    return _Plan(run, recipe, proof, data_path, sample, evaluation, sources, inputs)


def current_report(
    run_dir: str | Path,
    firmware_dir: str | Path,
    out_dir: str | Path,
    data_path: str | Path | None = None,
    *,
    validation: ValidationConfig | None = None,
) -> Validation | None:
    """The report at `out_dir` when it is intact and made from exactly what `validate` with
    these arguments would read (the run, firmware, data, settings); None otherwise."""
    plan = _plan(Path(run_dir), Path(firmware_dir), data_path, validation, None, "fast", {})
    if not current(out_dir, VALIDATE, plan.sources):
        return None
    return Validation(Path(out_dir), json.loads((Path(out_dir) / "metrics.json").read_text()))


def validate(
    run_dir: str | Path,
    firmware_dir: str | Path,
    out_dir: str | Path,
    data_path: str | Path | None = None,
    *,
    validation: ValidationConfig | None = None,
    replace: bool = False,
    test_jets: int | None = None,
    engine: str = "fast",
    shifted: dict[str, Path] | None = None,
    log: Log = print,
) -> Validation:
    """Compare the baseline and the four predictors; write metrics.json, report.md,
    report.html and PNGs.

    The firmware must have been emitted from this run. Its own recipe (the run's, with the
    firmware section it was built with) is the one reported; `validation` replaces that
    recipe's validation section (what `trigger run` passes). `data_path` is the run's data
    (default: the recipe's): the baseline trains on its training split and, unless
    `validation.data` names an evaluation file, its test split is evaluated. `test_jets` takes
    the first evaluation jets (all by default); `engine` picks the firmware emulator; `shifted`
    names samples made under other conditions (`data generate --variation`), each evaluated
    against the nominal sample. `out_dir` appears complete or not at all; `replace` lets it
    replace an earlier report there, never anything else.
    """
    run_dir, firmware_dir, out_dir = Path(run_dir), Path(firmware_dir), Path(out_dir)
    shifted = shifted or {}
    plan = _plan(run_dir, firmware_dir, data_path, validation, test_jets, engine, shifted)
    run, recipe, data_path, sample, evaluation = (
        plan.run,
        plan.recipe,
        plan.data_path,
        plan.sample,
        plan.evaluation,
    )
    sources, inputs = plan.sources, plan.inputs
    check_output(out_dir, VALIDATE, inputs, replace)
    n_constituents = InputStage.load(run_dir / "input_stage.json").n_constituents
    for path in shifted.values():  # every shifted file readable before any work is done
        readable_jets(path, n_constituents)
        require_every_class(path, "the shifted sample", limit=test_jets)
    baseline = _baseline(run, recipe, data_path, run_dir, log)
    outputs, test = predictions(run_dir, firmware_dir, sample, engine, baseline.model)
    labels = test.labels
    evaluation["jets"] = len(labels)
    settings = recipe.validation
    efficiency = settings.working_point_efficiency
    judge_limit = settings.gates.max_observable_distance or 0.1
    observables = compare_selections(
        outputs["float"], outputs["firmware"], labels, test.observables, efficiency,
        judge_limit, settings.confidence,
    )  # fmt: skip
    compared = {k: outputs[k] for k in ("float", "student", "firmware")}
    observables["efficiency_curves"] = sculpting_curves(
        compared, labels, test.observables, efficiency
    )
    nominal = evaluated(outputs, test, recipe.data.features)
    shift = {}
    for name, path in shifted.items():
        shifted_outputs, shifted_jets = predictions(
            run_dir, firmware_dir, file_sampler(path, test_jets), engine, baseline.model
        )
        shift[name] = shift_summary(
            nominal,
            evaluated(shifted_outputs, shifted_jets, recipe.data.features),
            efficiency,
            judge_limit,
            settings.confidence,
        ) | {"data": str(path)}
    view = candidate_view(evaluation["data"], n_constituents)
    reference = _exact_reference(outputs, plan.proof, firmware_dir, test.words)
    classification = _classification(outputs, labels, recipe, reference)
    classification["firmware_engine"] = engine
    classification["firmware_proven_against"] = plan.proof["reference"]
    hardware = _hardware(firmware_dir, recipe, test.candidates.shape[1])
    exact = classification["firmware_student_bit_exact_fraction"]
    figures = _gate_figures(outputs, labels, observables, hardware, shift, exact)
    gates = evaluate_gates(settings.gates, figures, settings.confidence)
    metrics = {
        "evaluation": evaluation,
        "baseline": _baseline_record(baseline, outputs, labels),
        "classification": classification,
        "observables": observables,
        "hardware": hardware,
        "gates": gates,
        "decision": _decision(gates, settings),
        "candidate_view": {k: v for k, v in view.items() if k not in ("all", "leading")},
    }
    if shift:
        metrics["shift"] = shift
    with stage_output(out_dir, VALIDATE, sources, inputs=inputs, replace=replace) as tmp:
        plots = _plots(outputs, test, metrics, recipe, tmp)
        if view["jets"]:
            plots["candidate_view"] = report.plot_candidate_view(view, tmp / "candidate_view.png")
        write_json(tmp / "metrics.json", metrics)
        markdown = report.render_markdown(metrics, plots, recipe.name)
        (tmp / "report.md").write_text(markdown)
        (tmp / "report.html").write_text(report.render_html(markdown, tmp, recipe.name))
        save_recipe(recipe, tmp / "recipe.yaml")
    return Validation(out_dir, metrics)
