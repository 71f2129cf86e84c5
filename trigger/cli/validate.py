"""`trigger validate`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from trigger.cli.options import force


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--firmware",
    "firmware_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Project written by `trigger emit-hls`.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Report directory (metrics.json, report.md/.html, PNGs).",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Dataset (default: the one the run was trained on).",
)
@force
def validate(
    run_dir: Path, firmware_dir: Path, out_dir: Path, data_path: Path | None, force: bool
) -> None:
    """Compare teacher, float reference, QKeras student and firmware emulator on the test split.

    The firmware must have been emitted from RUN. Exits 1 when a gate from the recipe's
    `validation.gates` fails, naming it, so the command can guard a CI job.

    \b
    Example:
      trigger validate runs/default --firmware firmware/default --out validation/default
    """  # fmt: skip
    from trigger.validation.stage import validate as run

    result = run(run_dir, firmware_dir, out_dir, data_path, replace=force)
    report_gates(result.metrics, result.out_dir)


def report_gates(metrics: dict, out_dir: Path) -> None:
    """Print the headline figures and gates; exit 1 if a gate failed."""
    predictors = metrics["classification"]["predictors"]
    accuracies = ", ".join(f"{n} {p['accuracy']:.4f}" for n, p in predictors.items())
    click.echo(f"accuracy: {accuracies}")
    exact = metrics["classification"]["firmware_student_bit_exact_fraction"]
    click.echo(f"firmware bit-exact with the QKeras student on {exact:.2%} of test jets")
    failures = []
    for name, gate in metrics["gates"].items():
        verdict = "ok" if gate["passed"] else "FAILED"
        click.echo(f"gate {name}: {gate['value']} (limit {gate['limit']}) {verdict}")
        if not gate["passed"]:
            failures.append(name)
    click.echo(f"report: {out_dir / 'report.html'}")
    if failures:
        click.echo(f"trigger: validation gates failed: {', '.join(failures)}", err=True)
        sys.exit(1)
