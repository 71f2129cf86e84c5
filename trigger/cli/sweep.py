"""`trigger sweep`."""

from __future__ import annotations

from pathlib import Path

import click

from trigger.cli import options
from trigger.errors import CheckFailed


@click.command()
@click.argument("sweep_path", metavar="SWEEP", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (default: sweeps/NAME, NAME the sweep file's name). Rerunning the "
    "same command there resumes the sweep.",
)
@options.cluster("the sweep file")
@options.scheduler
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Local: worker processes (default: one per core). Batch: jobs to start.",
)
@click.option(
    "--confirm-front",
    is_flag=True,
    help="Run Verilator and Yosys on the Pareto front's members and redraw with their figures.",
)
@click.option(
    "--job-script",
    is_flag=True,
    help="Print the batch job script dask-jobqueue would submit for --cluster, and stop.",
)
def sweep(
    sweep_path: Path,
    out: Path | None,
    cluster_kind: str | None,
    scheduler: str | None,
    workers: int | None,
    confirm_front: bool,
    job_script: bool,
) -> None:
    """Search recipe space with Optuna, each trial a training on a Dask worker.

    SWEEP names a base recipe, the recipe fields to search, the objectives (accuracy up; LUT,
    FF and latency down, from da4ml's cost model of the whole firmware path), a trial budget
    and a sampler. Writes OUT/trials.csv, OUT/pareto.json, OUT/pareto.png, one directory per
    trial (OUT/trials/NNNN: its recipe, run and figures) and, for a scaling sweep,
    OUT/scaling.json, OUT/scaling.png and OUT/generalisation.png. A killed sweep resumes where
    it stopped when the same command runs again.

    \b
    Examples:
      trigger sweep models/sweeps/pareto.yaml
      trigger sweep models/sweeps/pareto.yaml --cluster slurm --workers 10
      trigger sweep models/sweeps/pareto.yaml --scheduler tcp://10.0.0.5:8786
      trigger recipe from-trial sweeps/pareto/trials/0007 --out models/pareto-7.yaml
    """  # fmt: skip
    from trigger.cluster import dask_client
    from trigger.cluster import job_script as batch_job_script
    from trigger.pipeline import ensure_data
    from trigger.sweep import load_sweep
    from trigger.sweep import sweep as run_sweep

    spec, base = load_sweep(sweep_path)
    section = spec.cluster.model_dump(mode="json")
    config = options.cluster_settings(cluster_kind, workers, section)
    if job_script:
        click.echo(batch_job_script(config), nl=False)
        return
    out = out or Path("sweeps") / sweep_path.stem
    with dask_client(config, scheduler, log=click.echo) as client:
        if spec.data:
            data = spec.data
        else:  # the base recipe's file, generated as `trigger run` would when absent
            data = ensure_data(
                Path(base.data.path), base.data.generation, config.workers or 2, click.echo, client
            )
        summary = run_sweep(spec, out, data, client, confirm=confirm_front, log=click.echo)
    _report(summary, out)


def _report(summary: dict, out: Path) -> None:
    trials = summary["trials"]
    click.echo(f"trials: {trials['complete']} completed, {trials['fail']} failed")
    if trials["fail"] and not trials["complete"]:
        msg = (
            f"every trial of the sweep failed (errors: {out}/trials/*/error.txt, {out}/trials.csv)"
        )
        raise CheckFailed(msg)
    for member in summary["front"]:
        figures, measured = member["figures"], member["measured"] or {}
        lut = measured.get("lut", figures["lut"])
        click.echo(
            f"front: trial {member['number']}: accuracy {figures['accuracy']:.4f}, {lut} LUT "
            f"({'Yosys' if measured else 'da4ml estimate'}), "
            f"{measured.get('latency_ns', figures['latency_ns']):g} ns"
        )
    if "scaling" in summary:
        for model, fit in summary["scaling"].items():
            v, e = fit["values"], fit["errors"]
            click.echo(
                f"scaling {model}: alpha {v['alpha']:.3f} ± {e['alpha']:.3f}, "
                f"beta {v['beta']:.3f} ± {e['beta']:.3f}, c {v['c']:.4f} ± {e['c']:.4f}"
            )
    click.echo(f"results: {out}/trials.csv, {out}/pareto.json, {out}/pareto.png")
