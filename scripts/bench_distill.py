"""Label-only vs distilled students (without and with mirrored jets) over training seeds.

    .venv/bin/python scripts/bench_distill.py --data data/bench.h5 --epochs 60 --seeds 3

Every student has the recipe's architecture, compression and epochs (training.epochs, which
distillation.epochs is set to); only the targets differ: labels alone, labels + the teacher's
logits on the fixed training jets, and labels + the teacher's logits on each step's mirrored
jets (`distillation.augment`); a recipe's `distillation.extra_data` joins both distilled
students. The teacher is trained once (its own seed) and cached under <work>/.teachers. The
seeds share one test split, so the paired per-seed difference is what tells a gain from seed
noise: the table gives each mean with its standard error over seeds.
Use a file with >= 20k jets per class for numbers worth quoting; `--jets` and `--epochs` make
a smoke run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
LABEL_ONLY = "label-only"


def variants(recipe, augment: tuple[str, ...]) -> dict:
    """The students compared: the same recipe with only its distillation section changed."""

    def distillation(**update):
        # Same epochs and patience as label-only: only the targets differ.
        same = {"epochs": None, "patience": None}
        section = recipe.distillation.model_copy(update={**same, **update})
        return recipe.model_copy(update={"distillation": section})

    return {
        LABEL_ONLY: distillation(enabled=False),
        "distilled": distillation(enabled=True, augment=()),
        f"distilled, {' + '.join(augment)}": distillation(enabled=True, augment=augment),
    }


def with_seed(recipe, seed: int):
    return recipe.model_copy(update={"training": recipe.training.model_copy(update={"seed": seed})})


def mean_and_error(values) -> tuple[float, float]:
    """Mean and its standard error (nan with a single value)."""
    import numpy as np

    values = np.asarray(values, float)
    error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(error)


def markdown(accuracy: dict[str, list[float]], title: str) -> str:
    """Mean accuracy and the paired gain over label-only, each with its standard error."""
    import numpy as np

    def points(value: float) -> str:
        return "-" if np.isnan(value) else f"{100 * value:.2f}"

    base = np.asarray(accuracy[LABEL_ONLY])
    lines = [
        f"{title}\n",
        "| student | accuracy | s.e. | gain over label-only [points] | s.e. [points] |",
        "|---|---|---|---|---|",
    ]
    for name, values in accuracy.items():
        mean, error = mean_and_error(values)
        row = [name, f"{mean:.4f}", "-" if np.isnan(error) else f"{error:.4f}"]
        if name == LABEL_ONLY:
            row += ["", ""]
        else:
            gain, gain_error = mean_and_error(np.asarray(values) - base)
            row += [f"{100 * gain:+.2f}", points(gain_error)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="jet file in the hls4ml layout")
    parser.add_argument("--recipe", type=Path, default=ROOT / "models/default.yaml")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 1..S")
    parser.add_argument("--epochs", type=int, default=None, help="student epochs (all alike)")
    parser.add_argument("--teacher-epochs", type=int, default=None)
    parser.add_argument("--jets", type=int, default=None, help="read only this many jets")
    parser.add_argument(
        "--augment",
        default="reflect_eta,reflect_phi",
        help="symmetries of the augmented student, comma-separated",
    )
    parser.add_argument("--work", type=Path, default=None, help="teacher cache directory parent")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")

    from trigger.config import load_recipe
    from trigger.data.loader import load_dataset
    from trigger.errors import TriggerError
    from trigger.training.fit import evaluate
    from trigger.training.stage import distilling_teacher
    from trigger.training.student import train_float, train_student
    from trigger.training.teacher import cached_teacher

    overrides = [f"distillation.augment=[{args.augment}]"]
    if args.epochs:
        overrides.append(f"training.epochs={args.epochs}")
    if args.teacher_epochs:
        overrides.append(f"distillation.teacher.epochs={args.teacher_epochs}")
    if args.jets:
        overrides.append(f"data.max_jets={args.jets}")
    overrides += args.overrides
    try:
        recipe = load_recipe(args.recipe, overrides)
    except TriggerError as error:
        parser.error(str(error))
    students = variants(recipe, recipe.distillation.augment)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_distill_"))
    start = time.perf_counter()
    data = load_dataset(recipe.data, recipe.quantization.input, args.data)
    model, view, _ = cached_teacher(recipe, args.data, work / ".teachers", print, 0)
    teacher = distilling_teacher(recipe, args.data, model, view)
    teacher_accuracy = evaluate(model, view.test)["accuracy"]
    accuracy: dict[str, list[float]] = {name: [] for name in students}
    for seed in range(1, args.seeds + 1):
        reference = None
        if recipe.training.init_from_float:  # each student starts from its own seed's twin
            reference = train_float(with_seed(recipe, seed), data, 0).model
        for name, student in students.items():
            print(f"seed {seed}: {name}")
            distilled = student.distillation.enabled
            model = train_student(
                with_seed(student, seed), data, teacher if distilled else None, 0, reference
            ).model
            accuracy[name].append(evaluate(model, data.test)["accuracy"])
    title = (
        f"{args.data.name}: {len(data.train)} training and {len(data.test)} test jets, "
        f"{recipe.training.epochs} epochs, seeds 1-{args.seeds}, teacher accuracy "
        f"{teacher_accuracy:.4f}"
    )
    table = markdown(accuracy, title)
    print(table)
    if args.out:
        args.out.write_text(table)
    print(f"total {time.perf_counter() - start:.0f} s; teacher cache in {work / '.teachers'}")


if __name__ == "__main__":
    main()
