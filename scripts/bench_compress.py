"""Compare teacher, float reference, student with and without distillation, literature Deep Sets.

    .venv/bin/python scripts/bench_compress.py --data data/bench.h5 --epochs 30

Use a file with >= 20k jets per class for numbers worth quoting. Every model is trained on the
same split of the same file; the teacher is cached under <work>/.teachers like the CLI does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]


def _bits(recipe) -> str:
    if not recipe.quantization.enabled:
        return "float32"
    q = recipe.quantization
    # QKeras (bits, integer) of weights, activations and inputs; per-layer overrides not shown.
    parts = {"w": q.default.weight, "a": q.default.activation, "in": q.input}
    return " ".join(f"{k}{f.bits},{f.integer}" for k, f in parts.items())


def seed_spread(recipe, no_distill, data, teacher, seeds, first):
    """Accuracy of the student with and without distillation for each training seed."""
    import numpy as np
    from rich.table import Table

    from trigger.training.fit import evaluate
    from trigger.training.student import train_float, train_student

    def with_seed(r, seed):
        return r.model_copy(update={"training": r.training.model_copy(update={"seed": seed})})

    def accuracy(r, teacher, reference):
        model = train_student(r, data, teacher, 0, reference).model
        return evaluate(model, data.test)["accuracy"]

    results = [first]
    for seed in seeds:
        print(f"seed {seed}: training both students")
        # A student that starts from its float twin starts from the twin of its own seed.
        reference = None
        if recipe.training.init_from_float:
            reference = train_float(with_seed(recipe, seed), data, 0).model
        plain = accuracy(with_seed(no_distill, seed), None, reference)
        results.append((seed, plain, accuracy(with_seed(recipe, seed), teacher, reference)))
    table = Table(title="student accuracy by training seed")
    for column in ("seed", "no distillation", "distilled", "distilled - no distillation"):
        table.add_column(column, justify="right")
    for seed, plain, distilled in results:
        table.add_row(str(seed), f"{plain:.4f}", f"{distilled:.4f}", f"{distilled - plain:+.4f}")
    values = np.array([r[1:] for r in results])
    spread = [*values.T, values[:, 1] - values[:, 0]]
    table.add_row("mean +- std", *(f"{v.mean():.4f} +- {v.std(ddof=1):.4f}" for v in spread))
    # The seeds share one test split, so the paired difference is what tells a real gain.
    gain = spread[-1]
    table.caption = (
        f"distillation gain {100 * gain.mean():+.2f} points, standard error "
        f"{100 * gain.std(ddof=1) / np.sqrt(len(gain)):.2f} over {len(gain)} seeds"
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="jet file in the hls4ml layout")
    parser.add_argument("--epochs", type=int, default=30, help="student and float epochs")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: --epochs")
    parser.add_argument("--recipe", type=Path, default=ROOT / "models/default.yaml")
    parser.add_argument("--literature", type=Path, default=ROOT / "models/literature_deepsets.yaml")
    parser.add_argument("--work", type=Path, default=None, help="teacher cache directory parent")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=[],
        help="also train both students with these training seeds: the seed-to-seed spread",
    )
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from trigger.config import CLASS_NAMES, load_recipe
    from trigger.data.loader import load_dataset
    from trigger.training.fit import evaluate
    from trigger.training.stage import distilling_teacher
    from trigger.training.student import student_metrics, train_float, train_student
    from trigger.training.teacher import cached_teacher

    teacher_epochs = args.teacher_epochs or args.epochs
    common = [
        f"training.epochs={args.epochs}",
        f"distillation.teacher.epochs={teacher_epochs}",
        *args.overrides,
    ]
    recipe = load_recipe(args.recipe, common)
    no_distill = recipe.model_copy(
        update={"distillation": recipe.distillation.model_copy(update={"enabled": False})}
    )
    literature = load_recipe(args.literature, common)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_compress_"))
    quiet = 0

    rows: list[tuple[str, dict, str, float]] = []
    start = time.perf_counter()
    data = load_dataset(recipe.data, recipe.quantization.input, args.data)
    teacher, teacher_data, _ = cached_teacher(recipe, args.data, work / ".teachers", print, quiet)
    rows.append(("teacher", evaluate(teacher, teacher_data.test), "float32", 0.0))
    teacher = distilling_teacher(recipe, args.data, teacher, teacher_data)

    def student_row(name, r, d, teacher=None, reference=None):
        t0 = time.perf_counter()
        model = train_student(r, d, teacher, quiet, reference).model
        m = student_metrics(model, d.test)
        rows.append((name, m, _bits(r), time.perf_counter() - t0))

    print("training float reference")
    t0 = time.perf_counter()
    reference = train_float(recipe, data, quiet).model
    seconds = time.perf_counter() - t0
    rows.append(("float reference", evaluate(reference, data.test), "float32", seconds))
    print("training student without distillation")
    student_row("student, no distillation", no_distill, data, None, reference)
    print("training student with distillation")
    student_row("student, distilled", recipe, data, teacher, reference)
    print("training literature Deep Sets")
    same_inputs = (literature.data, literature.quantization.input) == (
        recipe.data,
        recipe.quantization.input,
    )
    lit_data = (
        data
        if same_inputs
        else load_dataset(literature.data, literature.quantization.input, args.data)
    )
    lit_teacher = teacher if literature.distillation.enabled else None
    student_row("literature Deep Sets", literature, lit_data, lit_teacher)

    table = Table(title=f"{args.data}: {len(data.test)} test jets, {args.epochs} epochs")
    for column in ("model", "acc", *(f"AUC {c}" for c in CLASS_NAMES)):
        table.add_column(column, justify="left" if column == "model" else "right")
    for column in ("params", "nonzero", "sparsity", "bits", "train s"):
        table.add_column(column, justify="right")
    for name, m, bits, seconds in rows:
        aucs = [f"{m['auc'][c]:.4f}" if m["auc"][c] is not None else "-" for c in CLASS_NAMES]
        nonzero = str(m.get("nonzero_parameters", m["parameters"]))
        sparsity = f"{m['sparsity']:.2f}" if "sparsity" in m else "-"
        duration = f"{seconds:.0f}" if seconds else "-"
        row = [name, f"{m['accuracy']:.4f}", *aucs, str(m["parameters"]), nonzero, sparsity]
        table.add_row(*row, bits, duration)
    Console(width=160).print(table)
    if args.seeds:
        first = (recipe.training.seed, rows[2][1]["accuracy"], rows[3][1]["accuracy"])
        Console(width=160).print(seed_spread(recipe, no_distill, data, teacher, args.seeds, first))
    print(f"total {time.perf_counter() - start:.0f} s; teacher cache in {work / '.teachers'}")


if __name__ == "__main__":
    main()
