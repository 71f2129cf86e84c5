"""Matplotlib without a screen, and PNGs written atomically: what every stage's plots share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trigger.io import atomic_path


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path) -> Path:
    fig.set_layout_engine("constrained")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    pyplot().close(fig)
    return path
