"""`trigger adapt` against doing nothing and against retraining from scratch, over seeds.

    .venv/bin/python scripts/bench_adapt.py --run runs/default --shifted data/threshold_up.h5 \\
        --seeds 3 --work runs/bench_adapt

On the shifted file's test split and on the run's own (nominal) test split: the deployed
student as it is; `trigger adapt` with nominal rehearsal (the default), without, and (`--anchor
L`) without rehearsal but with an L2 pull towards the deployed weights; a student
trained from scratch on the shifted file alone (the run's recipe, label-only so that no teacher
is trained again, its own input stage). Each mean over training seeds with its standard error.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def mean_error(values: list[float]) -> str:
    v = np.asarray(values, float)
    error = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return f"{v.mean():.4f} +- {error:.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--shifted", type=Path, required=True, help="labelled, new conditions")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--work", type=Path, required=True, help="where the runs are written")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument(
        "--anchor", type=float, action="append", default=[], metavar="L",
        help="also adapt without rehearsal, with an L2 anchor of this strength (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()

    from trigger import taggers
    from trigger.artifacts import TRAIN, open_artifact, training_data
    from trigger.config import load_recipe
    from trigger.data.loader import load_test_split
    from trigger.inputs import InputStage
    from trigger.training.adapt import AdaptSettings, adapt
    from trigger.training.fit import evaluate
    from trigger.training.stage import train_and_compress

    start = time.perf_counter()
    recipe = load_recipe(args.run / "recipe.yaml")
    nominal = training_data(open_artifact(args.run, TRAIN), recipe.data.path)

    def accuracies(run_dir: Path) -> tuple[float, float]:
        stage = InputStage.load(run_dir / "input_stage.json")
        model = taggers.load_model(run_dir / "student.h5")
        return tuple(
            evaluate(model, load_test_split(recipe.data, stage, path))["accuracy"]
            for path in (args.shifted, nominal)
        )

    rows: dict[str, list[tuple[float, float]]] = {"deployed (nothing done)": [accuracies(args.run)]}
    for seed in range(1, args.seeds + 1):
        variants = [("adapt, rehearsal 1", 1.0, 0.0), ("adapt, no rehearsal", 0.0, 0.0)]
        variants += [(f"adapt, anchor {a:g}, no rehearsal", 0.0, a) for a in args.anchor]
        for name, rehearsal, anchor in variants:
            out = args.work / f"adapt_r{rehearsal:g}_a{anchor:g}_s{seed}"
            settings = AdaptSettings(rehearsal=rehearsal, anchor=anchor, seed=seed)
            adapt(args.run, args.shifted, out, settings, verbose=0, log=print)
            rows.setdefault(name, []).append(accuracies(out))
        scratch = recipe.model_copy(update={
            "distillation": recipe.distillation.model_copy(update={"enabled": False}),
            "training": recipe.training.model_copy(update={"seed": seed}),
        })  # fmt: skip
        out = args.work / f"scratch_s{seed}"
        if not (out / "student.h5").is_file():
            train_and_compress(scratch, args.shifted, out, verbose=0, log=print)
        rows.setdefault("from scratch on the shifted file", []).append(accuracies(out))
        print(f"seed {seed} done", flush=True)
    lines = [
        f"{args.run} adapted to {args.shifted.name}; student accuracy on each test split, "
        f"mean +- standard error over seeds 1-{args.seeds}:\n",
        "| student | shifted test split | nominal test split |",
        "|---|---|---|",
    ]
    for name, values in rows.items():
        shifted, nominal_values = zip(*values, strict=True)
        lines.append(f"| {name} | {mean_error(shifted)} | {mean_error(nominal_values)} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
