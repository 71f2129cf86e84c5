"""`trigger recipe show | reference | from-trial`."""

from __future__ import annotations

from pathlib import Path

import click

from trigger.cli.options import force, recipe_overrides


@click.group()
def recipe() -> None:
    """Look at recipes: resolved with every default, and the reference of every key."""


@recipe.command()
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(dir_okay=False, path_type=Path))
@recipe_overrides
def show(recipe_path: Path, overrides: tuple[str, ...]) -> None:
    """Print RECIPE as the stages read it: overrides applied, every default filled in.

    \b
    Example:
      trigger recipe show models/default.yaml --set training.epochs=5
    """
    import yaml

    from trigger.config import load_recipe

    resolved = load_recipe(recipe_path, overrides).model_dump(mode="json")
    click.echo(yaml.safe_dump(resolved, sort_keys=False), nl=False)


@recipe.command()
def reference() -> None:
    """Print the reference of every recipe key (type, default, meaning) as Markdown.

    \b
    Example:
      trigger recipe reference > docs/recipes.md
    """
    from trigger.config import recipe_reference

    click.echo(recipe_reference(), nl=False)


@recipe.command("from-trial")
@click.argument("trial_dir", metavar="TRIAL", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Recipe file to write (an existing file is replaced only if this command wrote it, "
    "with --force).",
)
@force
def from_trial(trial_dir: Path, out: Path, force: bool) -> None:
    """Write the recipe a sweep trial trained (e.g. a Pareto-front member) as a recipe file.

    \b
    Example:
      trigger recipe from-trial sweeps/pareto/trials/0007 --out models/pareto-7.yaml
    """
    from trigger.io import atomic_path, check_file_output
    from trigger.sweep import recipe_from_trial
    from trigger.sweep.driver import written_from_trial

    def check(final: Path) -> None:
        check_file_output(final, "recipe from-trial", written_from_trial, replace=force)

    check(out)
    text = recipe_from_trial(trial_dir)
    with atomic_path(out, check) as tmp:
        tmp.write_text(text)
    click.echo(f"wrote {out}")
