"""`trigger validate`."""

from __future__ import annotations

from pathlib import Path

import click

from trigger.cli.options import engine, force
from trigger.errors import CheckFailed, TriggerError


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
    help="Evaluation file: every jet of it is evaluated (it must hold no training jets: "
    "generate it with another --seed; the run's own data file gives its test split) "
    "[default: validation.data, else the run's test split].",
)
@click.option(
    "--test-jets",
    type=click.IntRange(min=1),
    default=None,
    help="Evaluate the first N evaluation jets [default: all of them].",
)
@click.option(
    "--allow-undecided",
    is_flag=True,
    help="Exit 0 when gates are undecided for lack of jets (they stay reported as undecided; "
    "same as --set validation.allow_undecided=true).",
)
@engine
@click.option(
    "--shifted",
    multiple=True,
    metavar="NAME=FILE",
    help="A sample made under other conditions (trigger data generate --variation), "
    "evaluated against the nominal sample (the test split or --data) (repeatable).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="validation.KEY=VALUE",
    help="Override a validation setting or gate of the firmware's recipe, e.g. --set "
    "validation.gates.max_shift_degradation=0.01 (repeatable).",
)
@force
def validate(
    run_dir: Path,
    firmware_dir: Path,
    out_dir: Path,
    data_path: Path | None,
    test_jets: int | None,
    allow_undecided: bool,
    engine: str,
    shifted: tuple[str, ...],
    overrides: tuple[str, ...],
    force: bool,
) -> None:
    """Compare a baseline, teacher, float reference, QKeras student and firmware emulator.

    The firmware must have been emitted from RUN. Exits 1 when a gate from the recipe's
    `validation.gates` fails, or is undecided because the evaluation holds too few jets to
    judge it (unless allowed), naming it, so the command can guard a CI job.

    \b
    Examples:
      trigger validate runs/default --firmware firmware/default --out validation/default
      trigger validate runs/default --firmware firmware/default --out validation/default \\
          --data data/demo_eval.h5
      trigger validate runs/default --firmware firmware/default --out validation/shift \\
          --shifted ue-off=data/ue_off.h5 --shifted tune-a14=data/a14.h5
    """  # fmt: skip
    from trigger.config import load_recipe, override_section
    from trigger.validation.stage import validate as run

    options = [f"validation.data={data_path}"] if data_path else []
    options += ["validation.allow_undecided=true"] if allow_undecided else []
    validation = None
    if overrides or options:
        recipe = load_recipe(firmware_dir / "recipe.yaml")
        validation = override_section(recipe.validation, "validation", (*overrides, *options))
    result = run(
        run_dir,
        firmware_dir,
        out_dir,
        validation=validation,
        log=click.echo,
        replace=force,
        test_jets=test_jets,
        engine=engine,
        shifted=parse_shifted(shifted),
    )
    report_gates(result.metrics, result.out_dir)


def parse_shifted(values: tuple[str, ...]) -> dict[str, Path]:
    """NAME=FILE pairs -> {name: path}; a one-line error for anything else."""
    shifted: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            msg = f"--shifted takes NAME=FILE, got '{value}'"
            raise TriggerError(msg)
        if name in shifted:
            msg = f"--shifted names '{name}' twice"
            raise TriggerError(msg)
        shifted[name] = Path(path)
    return shifted


def _gate_line(name: str, gate: dict) -> str:
    value = gate["value"]
    if gate["uncertainty"] is not None and value is not None:
        value = f"{value:.4g} +- {gate['uncertainty']:.2g}"
    line = f"gate {name}: {value} (limit {gate['limit']}) {gate['verdict'].upper()}"
    if gate["verdict"] == "undecided":
        needed = gate["jets_needed"]
        line += f" on {gate['jets']:,} jets, needs {_jets(needed)}"
    return line


def _jets(needed: int | None) -> str:
    return "more jets than can be estimated" if needed is None else f"{needed:,} jets"


def report_gates(metrics: dict, out_dir: Path) -> None:
    """Print the headline figures and gates; exit 1 if a gate failed, or is undecided without
    `validation.allow_undecided`."""
    predictors = metrics["classification"]["predictors"]
    accuracies = ", ".join(f"{n} {p['accuracy']:.4f}" for n, p in predictors.items())
    click.echo(f"accuracy: {accuracies}")
    exact = metrics["classification"]["firmware_student_bit_exact_fraction"]
    reference = metrics["classification"].get("firmware_proven_against", "reference")
    click.echo(f"firmware bit-exact with the student ({reference}) on {exact:.2%} of the jets")
    for name, shift in metrics.get("shift", {}).items():
        limited = " (the nominal sample limits it)" if shift["nominal_limits"] else ""
        click.echo(
            f"shift {name}: firmware minus float accuracy change "
            f"{100 * shift['firmware_minus_float_accuracy_change']:+.2f} "
            f"+- {100 * shift['uncertainty']:.2f} points{limited}"
        )
    gates = metrics["gates"]
    for name, gate in gates.items():
        click.echo(_gate_line(name, gate))
    click.echo(f"report: {out_dir / 'report.html'}")
    decision = metrics["decision"]
    problems = []
    if decision["failed"]:
        problems.append(f"validation gates failed: {', '.join(decision['failed'])}")
    if decision["undecided"] and not decision["allow_undecided"]:
        needs = ", ".join(
            f"{name} needs {_jets(gates[name]['jets_needed'])}" for name in decision["undecided"]
        )
        problems.append(
            f"validation gates undecided: {needs} (evaluate more with --data FILE, or allow "
            "with --allow-undecided)"
        )
    if problems:
        msg = f"{'; '.join(problems)} (details: {out_dir / 'report.md'})"
        raise CheckFailed(msg)
