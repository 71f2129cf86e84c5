"""`trigger validate`: teacher, float reference, QKeras student and firmware on the test split."""

from __future__ import annotations

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
    data_identity,
    open_artifact,
    require_source,
    stage_output,
)
from trigger.config import Recipe, ValidationConfig, load_recipe, save_recipe
from trigger.data.loader import JetSample, load_test_split, read_jets, readable_jets
from trigger.errors import TriggerError
from trigger.inputs import InputStage
from trigger.io import write_json
from trigger.validation import hardware as hw
from trigger.validation import report
from trigger.validation.gates import evaluate_gates, failed
from trigger.validation.metrics import (
    SIGNALS,
    classification_summary,
    one_vs_rest_roc,
    top_class_agreement,
)
from trigger.validation.observables import compare_selections, sculpting_curves
from trigger.validation.shift import shift_summary

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
    run_dir: Path, firmware_dir: Path, sample: Sampler, engine: str = "fast"
) -> tuple[dict[str, np.ndarray], JetSample]:
    """Logits of every predictor on the same jets, each under its own input contract; the
    firmware's from the named emulator (`trigger.emulate.ENGINES`).

    The directories are ones `open_artifact` has checked: every file they need is there.
    """
    from trigger.emulate import engine as emulator
    from trigger.taggers import load_model, predict

    test = sample(InputStage.load(run_dir / "input_stage.json"))
    outputs: dict[str, np.ndarray] = {}
    if (run_dir / "teacher.h5").is_file():
        teacher_x = sample(InputStage.load(run_dir / "teacher_input_stage.json")).x
        outputs["teacher"] = predict(load_model(run_dir / "teacher.h5"), teacher_x)
    outputs["float"] = predict(load_model(run_dir / "float.h5"), test.x)
    outputs["student"] = predict(load_model(run_dir / "student.h5"), test.x)
    outputs["firmware"] = emulator(firmware_dir, engine)(test.words)
    return outputs, test


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


def _classification(outputs: dict[str, np.ndarray], labels: np.ndarray, recipe: Recipe) -> dict:
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
            np.mean(np.all(outputs["firmware"] == outputs["student"], axis=1))
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
) -> Validation:
    """Compare the four predictors; write metrics.json, report.md, report.html and PNGs.

    The firmware must have been emitted from this run. Its own recipe (the run's, with the
    firmware section it was built with) is the one reported; `validation` replaces that
    recipe's validation section (what `trigger run` passes). `test_jets` takes the first jets
    of the test split (all of it by default); `engine` picks the firmware emulator; `shifted`
    names samples made under other conditions (`data generate --variation`), each evaluated
    against the nominal test split. `out_dir` appears complete or not at all; `replace` lets
    it replace an earlier report there, never anything else.
    """
    run_dir, firmware_dir, out_dir = Path(run_dir), Path(firmware_dir), Path(out_dir)
    run = open_artifact(run_dir, TRAIN)
    firmware = open_artifact(firmware_dir, EMIT)
    require_source(firmware, "run", run)
    from trigger.hls.stage import require_proven

    proof = require_proven(firmware_dir)  # not when its exactness checks failed at emit-hls
    recipe = load_recipe(firmware_dir / "recipe.yaml")
    if validation is not None:
        recipe = recipe.model_copy(update={"validation": validation})
    data_path = Path(data_path or recipe.data.path)
    shifted = shifted or {}
    sources = validate_sources(run, firmware, recipe, data_path)
    sources.update(
        {"test_jets": str(test_jets), "engine": engine}
        | {f"shifted {name}": data_identity(path) for name, path in shifted.items()}
    )
    inputs = [run_dir, firmware_dir, data_path, *shifted.values()]
    check_output(out_dir, VALIDATE, inputs, replace)
    n_constituents = InputStage.load(run_dir / "input_stage.json").n_constituents
    for path in shifted.values():  # every shifted file readable before any work is done
        readable_jets(path, n_constituents)
    sample = test_split_sampler(recipe, data_path, test_jets)
    outputs, test = predictions(run_dir, firmware_dir, sample, engine)
    labels = test.labels
    efficiency = recipe.validation.working_point_efficiency
    judge_limit = recipe.validation.gates.max_observable_distance or 0.1
    observables = compare_selections(
        outputs["float"], outputs["firmware"], labels, test.observables, efficiency, judge_limit
    )
    compared = {k: outputs[k] for k in ("float", "student", "firmware")}
    observables["efficiency_curves"] = sculpting_curves(
        compared, labels, test.observables, efficiency
    )
    shift = {}
    for name, path in shifted.items():
        shifted_outputs, shifted_jets = predictions(
            run_dir, firmware_dir, file_sampler(path, test_jets), engine
        )
        shift[name] = shift_summary(
            (outputs, labels),
            (shifted_outputs, shifted_jets.labels),
            shifted_jets.observables,
            efficiency,
            judge_limit,
        ) | {"data": str(path)}
    classification = _classification(outputs, labels, recipe)
    classification["firmware_engine"] = engine
    classification["firmware_proven_against"] = proof["reference"]
    hardware = _hardware(firmware_dir, recipe, test.candidates.shape[1])
    accuracy = {k: v["accuracy"] for k, v in classification["predictors"].items()}
    gates = evaluate_gates(
        recipe.validation.gates,
        {
            "accuracy_drop": accuracy["float"] - accuracy["firmware"],
            "observable_distance": observables["max_distance"],
            "bit_exact_fraction": classification["firmware_student_bit_exact_fraction"],
            "latency_ns": hardware["compressed"].get("latency_ns"),
            "lut": hardware["compressed"].get("lut"),
            "dsp": hardware["compressed"].get("dsp"),
            "shift_degradation": max((v["degradation"] for v in shift.values()), default=None),
        },
    )
    metrics = {
        "classification": classification,
        "observables": observables,
        "hardware": hardware,
        "gates": gates,
    }
    if shift:
        metrics["shift"] = shift
    with stage_output(out_dir, VALIDATE, sources, inputs=inputs, replace=replace) as tmp:
        plots = _plots(outputs, test, metrics, recipe, tmp)
        write_json(tmp / "metrics.json", metrics)
        markdown = report.render_markdown(metrics, plots, recipe.name)
        (tmp / "report.md").write_text(markdown)
        (tmp / "report.html").write_text(report.render_html(markdown, tmp, recipe.name))
        save_recipe(recipe, tmp / "recipe.yaml")
    return Validation(out_dir, metrics)
