"""The float teacher: trained on hard labels over its own N, cached per data file and section.

The teacher depends only on the data file and `distillation.teacher` (+ the data section); it
is cached under `<cache>/<key>/` and reused by any recipe with the same key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from trigger import taggers
from trigger.config import DataConfig, Recipe
from trigger.data.loader import Dataset, load_dataset
from trigger.errors import TriggerError
from trigger.io import Log, atomic_path, write_json
from trigger.training.fit import FitSettings, Trained, arrays, fit, save_h5, seed_everything

if TYPE_CHECKING:
    import tensorflow as tf


def train_teacher(recipe: Recipe, data: Dataset, verbose: int = 2) -> Trained:
    """The float teacher on hard labels; `data` holds the teacher's N constituents."""
    t = recipe.distillation.teacher
    settings = FitSettings(
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        schedule="cosine",
        patience=t.patience,
        seed=t.seed,
        verbose=verbose,
    )
    seed_everything(t.seed)
    model = taggers.build_teacher(recipe, data.train.x.shape[-1])
    history = fit(model, arrays(data.train), arrays(data.validation), settings)
    return Trained(model, history)


def teacher_data_config(recipe: Recipe) -> DataConfig:
    n = recipe.distillation.teacher.n_constituents
    return recipe.data.model_copy(update={"n_constituents": n})


def teacher_key(recipe: Recipe, data_path: Path) -> str:
    # Keyed on the data the teacher sees: students over other constituent counts share it.
    stat = data_path.stat()
    data = teacher_data_config(recipe).model_dump(mode="json")
    payload = {
        "data": data | {"path": str(data_path.resolve())},
        "port": recipe.quantization.input.model_dump(mode="json"),
        "teacher": recipe.distillation.teacher.model_dump(mode="json"),
        "file": [stat.st_size, stat.st_mtime_ns],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def teacher_data(recipe: Recipe, data_path: Path) -> Dataset:
    return load_dataset(teacher_data_config(recipe), recipe.quantization.input, data_path)


def cached_teacher(
    recipe: Recipe, data_path: Path, cache_dir: Path, log: Log, verbose: int = 2
) -> tuple[tf.keras.Model, Dataset, Path]:
    """Reuse the teacher trained for this data file and teacher section, or train it."""
    data = teacher_data(recipe, data_path)
    folder = cache_dir / teacher_key(recipe, data_path)
    if (folder / "teacher.h5").is_file():
        log(f"reusing teacher {folder}")
        try:
            return taggers.load_model(folder / "teacher.h5"), data, folder
        except TriggerError as error:
            msg = f"cached teacher unusable: {error}; delete {folder} to train it again"
            raise TriggerError(msg) from None
    log(f"training teacher ({recipe.distillation.teacher.epochs} epochs max)")
    trained = train_teacher(recipe, data, verbose)
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        save_h5(trained.model, tmp / "teacher.h5")
        data.input_stage.save(tmp / "input_stage.json")
        write_json(tmp / "history.json", trained.history)
    return trained.model, data, folder
