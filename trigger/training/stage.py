"""`trigger train-and-compress`: train teacher, float reference and student into a run directory.

`train_and_compress(recipe, data_path, out_dir)` writes, under fixed names:

    teacher.h5 + teacher_input_stage.json  float teacher over its own N (if distilling)
    float.h5      the student's architecture in plain float, hard labels, no pruning
    student.h5    QAT (quantization.enabled), magnitude pruning (pruning.enabled) and
                  knowledge distillation (distillation.enabled); weights stored on their grids
    recipe.yaml   the resolved recipe (data.path is the file actually read)
    input_stage.json  the firmware's input stage (features from L1 words), fitted on the
                  training split: every model here trains on exactly what it computes
    history.json, metrics.json
    artifact.json the run's seal: every file's hash, its identity, the data and recipe it used

All models output logits. The directory is built under a temporary name and renamed when
complete. The teacher is cached under `<out_dir>/../.teachers/<key>/` (`trigger.training.teacher`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trigger import taggers
from trigger.artifacts import TRAIN, check_output, data_identity, stage_output
from trigger.config import Recipe, save_recipe
from trigger.data.loader import Dataset, load_dataset, readable_jets
from trigger.errors import TriggerError
from trigger.io import Log, require_file, write_json
from trigger.training.distill import Teacher, extra_jets
from trigger.training.fit import evaluate, save_h5, train_loss
from trigger.training.pruning import with_target_sparsity
from trigger.training.student import student_metrics, train_float, train_student
from trigger.training.teacher import cached_teacher

if TYPE_CHECKING:
    import tensorflow as tf

TRAIN_SECTIONS = ("data", "architecture", "quantization", "pruning", "distillation", "training")


def train_sources(recipe: Recipe, data_path: str | Path) -> dict[str, str]:
    """What a run is made from: the data file's content, the distilled student's extra jets'
    (`distillation.extra_data`) and the recipe sections training reads.

    Data files count by their content, not their paths: the same files moved train the same run.
    """
    placed = recipe.distillation.extra_data is not None
    distillation = recipe.distillation.model_copy(update={"extra_data": "" if placed else None})
    unplaced = recipe.model_copy(
        update={"data": recipe.data.model_copy(update={"path": ""}), "distillation": distillation}
    )
    sources = {"data": data_identity(data_path), "recipe": unplaced.digest(*TRAIN_SECTIONS)}
    extra = extra_data(recipe, data_path)
    return sources | ({"extra_data": data_identity(extra)} if extra else {})


def extra_data(recipe: Recipe, data_path: str | Path) -> Path | None:
    """The file of `distillation.extra_data` when the student is distilled; refused when it is
    the training data file (by path or content): its validation and test jets would train."""
    d = recipe.distillation
    if not (d.enabled and d.extra_data):
        return None
    extra = require_file(d.extra_data, "distillation.extra_data")
    same_path = extra.resolve() == Path(data_path).resolve()
    if same_path or data_identity(extra) == data_identity(data_path):
        msg = (
            f"distillation.extra_data {extra} is the training data file: its validation and "
            "test jets would leak into training"
        )
        raise TriggerError(msg)
    readable_jets(extra, _extra_constituents(recipe), "distillation.extra_data", labelled=False)
    return extra


def _extra_constituents(recipe: Recipe) -> int:
    """Candidates read per extra jet: enough for the student's N and the teacher's."""
    return max(recipe.data.n_constituents, recipe.distillation.teacher.n_constituents)


def distilling_teacher(
    recipe: Recipe, data_path: str | Path, model: tf.keras.Model, view: Dataset
) -> Teacher:
    """The teacher as the student distils it: its model, its view of the training data and
    the words of the recipe's extra jets, if any."""
    extra = extra_data(recipe, data_path)
    words = extra_jets(extra, _extra_constituents(recipe)) if extra else None
    return Teacher(model, view, words)


def train_and_compress(
    recipe: Recipe,
    data_path: str | Path | None,
    out_dir: str | Path,
    teacher_cache: str | Path | None = None,
    verbose: int = 2,
    log: Log = print,
    replace: bool = False,
) -> Path:
    """Train teacher (if distilling), float reference and student; write the run directory.

    Returns `out_dir`, which appears complete or not at all, sealed with `train_sources`.
    `replace` lets it replace an earlier run there (never anything else). `teacher_cache`
    defaults to `<out_dir>/../.teachers`. `verbose` is Keras's (2: one line per epoch); `log`
    receives a line per stage.
    """
    out_dir = Path(out_dir)
    data_path = require_file(data_path or recipe.data.path)
    recipe = recipe.model_copy(
        update={"data": recipe.data.model_copy(update={"path": str(data_path)})}
    )
    extra = extra_data(recipe, data_path)
    inputs = [data_path, *([extra] if extra else [])]
    check_output(out_dir, TRAIN, inputs, replace)
    cache = Path(teacher_cache) if teacher_cache else out_dir.resolve().parent / ".teachers"
    data = load_dataset(recipe.data, recipe.quantization.input, data_path)
    sources = train_sources(recipe, data_path)
    with stage_output(out_dir, TRAIN, sources, inputs=inputs, replace=replace) as tmp:
        _train_into(tmp, recipe, data_path, data, cache, verbose, log)
    return out_dir


def _train_into(
    out: Path, recipe: Recipe, data_path: Path, data: Dataset, cache: Path, verbose: int, log: Log
) -> None:
    metrics: dict[str, Any] = {"train_jets": len(data.train), "test_jets": len(data.test)}
    histories: dict[str, Any] = {}
    # A pruning target the architecture cannot meet is refused before any training.
    with_target_sparsity(recipe, taggers.build_student(recipe, data.train.x.shape[-1]))
    teacher = None
    if recipe.distillation.enabled:
        model, teacher_data, folder = cached_teacher(recipe, data_path, cache, log, verbose)
        if not np.array_equal(teacher_data.train.y, data.train.y):
            msg = "teacher and student splits differ: the data file changed while loading"
            raise TriggerError(msg)
        teacher = distilling_teacher(recipe, data_path, model, teacher_data)
        metrics["teacher"] = evaluate(model, teacher_data.test)
        histories["teacher"] = json.loads((folder / "history.json").read_text())
        shutil.copyfile(folder / "teacher.h5", out / "teacher.h5")
        shutil.copyfile(folder / "input_stage.json", out / "teacher_input_stage.json")
    else:
        log("distillation off: no teacher")
        metrics["teacher"] = None

    log(f"training float reference ({recipe.training.epochs} epochs max)")
    reference = train_float(recipe, data, verbose)
    metrics["float"] = evaluate(reference.model, data.test)
    metrics["float"]["train_loss"] = train_loss(reference.model, data)
    histories["float"] = reference.history
    save_h5(reference.model, out / "float.h5")

    switches = [
        name
        for name, on in (
            (f"QAT ({recipe.quantization.method})", recipe.quantization.enabled),
            ("pruning", recipe.pruning.enabled),
            ("distillation", recipe.distillation.enabled),
        )
        if on
    ]
    log(f"training student ({', '.join(switches) or 'no compression'})")
    student = train_student(recipe, data, teacher, verbose, reference.model)
    metrics["student"] = student_metrics(student.model, data.test) | student.bit_widths
    metrics["student"]["train_loss"] = train_loss(student.model, data)
    histories["student"] = student.history
    save_h5(student.model, out / "student.h5")

    save_recipe(recipe, out / "recipe.yaml")
    data.input_stage.save(out / "input_stage.json")
    write_json(out / "history.json", histories)
    write_json(out / "metrics.json", metrics)
