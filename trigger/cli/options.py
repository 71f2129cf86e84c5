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

engine = click.option(
    "--engine",
    type=click.Choice(["fast", "hls"]),
    default="fast",
    show_default=True,
    help="Firmware emulator: fast (the firmware's arithmetic vectorised with numpy) or hls (the "
    "project's own C++ through g++, the reference); both bit-exact with the firmware.",
)
