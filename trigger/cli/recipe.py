"""`trigger recipe show | reference`."""

from __future__ import annotations

from pathlib import Path

import click

from trigger.cli.options import recipe_overrides


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
