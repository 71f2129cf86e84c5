"""Matplotlib without a screen, and PNGs written atomically: what every stage's plots share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trigger.io import atomic_path


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# The PNG `Software` text of every plot trigger writes: how a command knows a file at its
# output path is an earlier plot of its own, and not something to keep.
SOFTWARE = "trigger"


def save_png(fig: Any, path: Path, before_replace: Callable[[Path], None] | None = None) -> Path:
    fig.set_layout_engine("constrained")
    with atomic_path(path, before_replace) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": SOFTWARE})
    pyplot().close(fig)
    return path


def is_trigger_png(path: Path) -> bool:
    """Whether `path` is a PNG that `save_png` wrote."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.text.get("Software") == SOFTWARE
    except (OSError, UnidentifiedImageError, ValueError):
        return False


def log_x(ax: Any) -> None:
    """A log x axis labelled at 1, 2 and 5 times each power of ten, in plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
