"""`trigger run`: every stage for one recipe, skipping those whose artifacts are up to date.

The recipe given (with its overrides) drives every stage. A stage is up to date when its
output directory is intact (every file as sealed) and was made from the same sources: the
identities of the artifacts it consumes and the digest of the recipe sections it reads (see
`trigger.artifacts`). Anything else, including a missing or damaged output, reruns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trigger.artifacts import EMIT, TRAIN, current, open_artifact
from trigger.config import GenerationConfig, Recipe
from trigger.io import Log
from trigger.validation.stage import Validation


@dataclass(frozen=True)
class Layout:
    """Where one recipe's artifacts live."""

    run_dir: Path
    firmware_dir: Path
    validation_dir: Path

    @classmethod
    def for_recipe(cls, recipe: Recipe, root: Path = Path()) -> Layout:
        name = recipe.name
        return cls(root / "runs" / name, root / "firmware" / name, root / "validation" / name)


def ensure_data(
    path: Path, generation: GenerationConfig, workers: int, log: Log, client: Any = None
) -> Path:
    """The recipe's dataset; generated with its `data.generation` settings when absent (on
    the Dask `client`'s workers when given)."""
    from trigger.data.generate import GenerationSettings, generate

    if path.is_file():
        log(f"data: {path} (exists)")
        return path
    log(f"data: generating {path} ({generation.jets_per_class} jets per class)")
    return generate(GenerationSettings(**generation.model_dump()), path, workers, client)


def run_pipeline(recipe: Recipe, workers: int = 2, log: Log = print) -> Validation:
    from trigger.hls.stage import emit_hls, emit_sources
    from trigger.training.stage import train_and_compress, train_sources
    from trigger.validation.stage import current_report, validate

    layout = Layout.for_recipe(recipe)
    data_path = ensure_data(Path(recipe.data.path), recipe.data.generation, workers, log)

    if current(layout.run_dir, TRAIN, train_sources(recipe, data_path)):
        log(f"train-and-compress: {layout.run_dir} is up to date")
    else:
        train_and_compress(recipe, data_path, layout.run_dir, log=log, replace=True)
    run = open_artifact(layout.run_dir, TRAIN)

    if current(layout.firmware_dir, EMIT, emit_sources(run, recipe, data_path)):
        log(f"emit-hls: {layout.firmware_dir} is up to date")
    else:
        emit_hls(
            layout.run_dir,
            layout.firmware_dir,
            data_path=data_path,
            firmware=recipe.firmware,
            replace=True,
            log=log,
        )

    report = current_report(
        layout.run_dir,
        layout.firmware_dir,
        layout.validation_dir,
        data_path,
        validation=recipe.validation,
    )
    if report is not None:
        log(f"validate: {layout.validation_dir} is up to date")
        return report
    log(f"validate: {layout.validation_dir}")
    return validate(
        layout.run_dir,
        layout.firmware_dir,
        layout.validation_dir,
        data_path,
        validation=recipe.validation,
        replace=True,
    )
