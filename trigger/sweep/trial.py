"""One trial, as a Dask worker runs it: a recipe plus overrides through the pipeline's stages.

The trial trains with `train_and_compress` into `<trial>/run` and costs the student's whole
firmware path with da4ml's cost model (`trigger.rtl.estimate`, seconds per design), then
writes `<trial>/figures.json`. A trial whose figures exist returns them without work, so a
rerun sweep never trains a finished trial again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trigger.io import atomic_path

FIGURES = "figures.json"
MEASURED = "measured.json"


@dataclass(frozen=True)
class TrialTask:
    """Everything a worker needs: no state of the driver travels with it."""

    directory: Path
    recipe: Path
    overrides: tuple[str, ...]
    data: Path
    teacher_cache: Path


def _one_thread() -> None:
    """Size TensorFlow to the worker's one thread (a no-op once TensorFlow has started)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def run_trial(task: TrialTask) -> dict[str, Any]:
    """Train and cost one design; its figures (also in `<directory>/figures.json`)."""
    figures_file = task.directory / FIGURES
    if figures_file.is_file():
        return json.loads(figures_file.read_text())
    _one_thread()
    from trigger.artifacts import TRAIN, current
    from trigger.config import load_recipe
    from trigger.training.stage import train_and_compress, train_sources

    recipe = load_recipe(task.recipe, task.overrides)
    run_dir = task.directory / "run"
    if not current(run_dir, TRAIN, train_sources(recipe, task.data)):
        train_and_compress(
            recipe, task.data, run_dir, task.teacher_cache, verbose=0, log=_quiet, replace=True
        )
    figures = design_figures(run_dir)
    with atomic_path(figures_file) as tmp:
        tmp.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _quiet(_line: str) -> None:
    """Trials run by the dozen: their stage lines would bury the sweep's own progress."""


def design_figures(run_dir: Path) -> dict[str, Any]:
    """A trained run's accuracy, size and estimated whole-path cost, as a sweep compares them."""
    from trigger.config import load_recipe
    from trigger.inputs import InputStage
    from trigger.rtl import estimate
    from trigger.taggers import load_model

    recipe = load_recipe(run_dir / "recipe.yaml")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    student = load_model(run_dir / "student.h5")
    stage = InputStage.load(run_dir / "input_stage.json")
    cost = estimate(student, stage, run_dir.parent / "estimate", recipe.firmware, student=True)
    float_, compressed = metrics["float"], metrics["student"]
    return {
        "accuracy": compressed["accuracy"],
        "lut": cost["lut"],
        "ff": cost["ff"],
        "latency_ns": cost["latency_ns"],
        "float_accuracy": float_["accuracy"],
        "float_parameters": float_["parameters"],
        "float_test_loss": float_["loss"],
        "float_train_loss": float_["train_loss"],
        "student_parameters": compressed["parameters"],
        "nonzero_parameters": compressed["nonzero_parameters"],
        "student_bits": compressed_bits(student),
        "student_test_loss": compressed["loss"],
        "student_train_loss": compressed["train_loss"],
        "train_jets": metrics["train_jets"],
        "test_jets": metrics["test_jets"],
    }


def compressed_bits(model: Any) -> int:
    """The student's size in bits: each nonzero weight or bias times its quantizer's width
    (an HGQ student's: the width of its layer's weight format; 32 for a float layer)."""
    import numpy as np

    from trigger import taggers
    from trigger.hls.convert_hgq import is_hgq, weight_format

    hgq = is_hgq(model)
    total = 0
    for layer in taggers.dense_layers(model):
        quantizers = getattr(layer, "get_quantizers", lambda: [None, None])()
        for values, quantizer in zip(layer.get_weights(), quantizers, strict=False):
            if hgq:
                bits = weight_format(values).width
            else:
                bits = int(getattr(quantizer, "bits", 32)) if quantizer is not None else 32
            total += int(np.count_nonzero(values)) * bits
    return total


def confirm_design(directory: Path, data: Path, jets: int = 500) -> dict[str, Any]:
    """The open RTL flow on a trained design: Verilog simulated by Verilator (bit-exact
    against the student on `jets` test jets) and counted by Yosys -> `<directory>/measured.json`."""
    measured_file = directory / MEASURED
    if measured_file.is_file():
        return json.loads(measured_file.read_text())
    _one_thread()
    from trigger.config import load_recipe
    from trigger.hls.stage import emulation_sample
    from trigger.inputs import InputStage
    from trigger.rtl import emit_rtl
    from trigger.taggers import load_model

    run_dir = directory / "run"
    recipe = load_recipe(run_dir / "recipe.yaml")
    stage = InputStage.load(run_dir / "input_stage.json")
    sample = emulation_sample(recipe.data, stage, data, jets)
    student = load_model(run_dir / "student.h5")
    figures = emit_rtl(student, stage, directory / "rtl", recipe.firmware, sample.words)
    measured = {key: figures[key] for key in ("lut", "ff", "dsp", "latency_ns", "latency_cycles")}
    measured |= {
        "bit_exact_fraction": figures["bit_exact"]["bit_exact_fraction"],
        "source": figures["source"],
    }
    with atomic_path(measured_file) as tmp:
        tmp.write_text(json.dumps(measured, indent=2) + "\n")
    return measured
