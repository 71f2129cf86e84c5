"""`trigger train-and-compress`: recipe + data file -> teacher, float and compressed student."""

from __future__ import annotations

import os
from pathlib import Path

import click

from trigger.cli.options import force, recipe_overrides
from trigger.config import CLASS_NAMES, load_recipe


@click.command("train-and-compress")
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Jet file in the hls4ml layout [default: the recipe's data.path].",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Output directory [default: runs/<recipe name>].",
)
@recipe_overrides
@force
def train_and_compress_cmd(
    recipe_path: Path,
    data_path: Path | None,
    out_dir: Path | None,
    overrides: tuple[str, ...],
    force: bool,
) -> None:
    """Train the teacher and float reference, then QAT + pruning + distillation of the student.

    \b
    Writes teacher.h5, float.h5, student.h5, recipe.yaml, input_stage.json, history.json and
    metrics.json to --out, which appears complete or not at all. A teacher trained for the
    same data and teacher section is reused from <out>/../.teachers/.

    \b
    Examples:
      trigger train-and-compress models/default.yaml --data data/demo.h5 --out runs/default
      trigger train-and-compress models/mlp.yaml --set training.epochs=5 --set pruning.enabled=false
    """
    recipe = load_recipe(recipe_path, overrides)
    out_dir = out_dir or Path("runs") / recipe.name

    # Before TensorFlow loads: hide its C++ start-up noise (CUDA/TensorRT factory messages).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from trigger.training.stage import train_and_compress  # TensorFlow: imported only when run

    train_and_compress(recipe, data_path, out_dir, verbose=2, log=click.echo, replace=force)
    _print_metrics(out_dir)


def _print_metrics(out_dir: Path) -> None:
    import json

    from rich.console import Console
    from rich.table import Table

    metrics = json.loads((out_dir / "metrics.json").read_text())
    table = Table(title=f"{out_dir}/metrics.json (test split)")
    for column in ("model", "accuracy", *(f"AUC {c}" for c in CLASS_NAMES), "params", "nonzero"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name in ("teacher", "float", "student"):
        m = metrics[name]
        if m is None:
            continue
        aucs = [f"{m['auc'][c]:.3f}" if m["auc"][c] is not None else "-" for c in CLASS_NAMES]
        nonzero = str(m.get("nonzero_parameters", "-"))
        table.add_row(name, f"{m['accuracy']:.3f}", *aucs, str(m["parameters"]), nonzero)
    console = Console()
    (console if console.is_terminal else Console(width=120)).print(table)
    sparsity = metrics["student"]["sparsity"]
    click.echo(
        f"trained on {metrics['train_jets']} jets, tested on {metrics['test_jets']}; "
        f"student sparsity (hidden-layer kernels): {sparsity:.3f}; artifacts in {out_dir}"
    )
