"""Options shared by several commands."""

from __future__ import annotations

import click

recipe_overrides = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a recipe value, e.g. --set training.epochs=5 (repeatable).",
)

force = click.option(
    "--force",
    is_flag=True,
    help="Replace an earlier output of this same command at --out (never anything else).",
)
