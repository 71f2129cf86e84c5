"""`trigger run`: every stage for one recipe, skipping those whose artifacts are up to date.

A stage is up to date when its output directory holds a stamp whose key matches: a hash of
the recipe sections it reads and of the bytes of the artifacts it consumes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from trigger.config import GenerationConfig, Recipe
from trigger.io import Log
from trigger.validation.stage import Validation

STAMP = ".stage.json"


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


def fingerprint(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _key(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:16]


def _up_to_date(out_dir: Path, key: str) -> bool:
    stamp = out_dir / STAMP
    return stamp.is_file() and json.loads(stamp.read_text()).get("key") == key


def _stamp(out_dir: Path, key: str) -> None:
    (out_dir / STAMP).write_text(json.dumps({"key": key}) + "\n")


def ensure_data(path: Path, generation: GenerationConfig, workers: int, log: Log) -> Path:
    """The recipe's dataset; generated with its `data.generation` settings when absent."""
    from trigger.data.generate import GenerationSettings, generate

    if path.is_file():
        log(f"data: {path} (exists)")
        return path
    log(f"data: generating {path} ({generation.jets_per_class} jets per class)")
    return generate(GenerationSettings(**generation.model_dump()), path, workers)


def run_pipeline(recipe: Recipe, workers: int = 2, log: Log = print) -> Validation:
    from trigger.compress import train_and_compress
    from trigger.hls import emit_hls
    from trigger.validation.stage import validate

    layout = Layout.for_recipe(recipe)
    data_path = ensure_data(Path(recipe.data.path), recipe.data.generation, workers, log)

    train_key = _key(recipe.digest("data", "architecture", "quantization", "pruning",
                                   "distillation", "training"), fingerprint(data_path))  # fmt: skip
    if _up_to_date(layout.run_dir, train_key):
        log(f"train-and-compress: {layout.run_dir} is up to date")
    else:
        train_and_compress(recipe, data_path, layout.run_dir, log=log)
        _stamp(layout.run_dir, train_key)

    models = [layout.run_dir / f for f in ("student.h5", "float.h5", "preprocess.json")]
    emit_key = _key(train_key, recipe.digest("firmware"), fingerprint(*models))
    if _up_to_date(layout.firmware_dir, emit_key):
        log(f"emit-hls: {layout.firmware_dir} is up to date")
    else:
        emit_hls(layout.run_dir, layout.firmware_dir, data_path=data_path, log=log)
        _stamp(layout.firmware_dir, emit_key)

    log(f"validate: {layout.validation_dir}")
    return validate(layout.run_dir, layout.firmware_dir, layout.validation_dir, data_path)
