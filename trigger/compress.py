"""Stage 2: train the teacher, the float reference and the compressed student.

`train_and_compress(recipe, data_path, out_dir)` writes, under fixed names:

    teacher.h5 + teacher_input_stage.json  float teacher over its own N (if distilling)
    float.h5      the student's architecture in plain float, hard labels, no pruning
    student.h5    QAT (quantization.enabled), magnitude pruning (pruning.enabled) and
                  knowledge distillation (distillation.enabled); weights stored on their grids
    recipe.yaml   the resolved recipe (data.path is the file actually read)
    input_stage.json  the firmware's input stage (features from L1 words), fitted on the
                  training split: every model here trains on exactly what it computes
    history.json, metrics.json
    artifact.json the run's seal: every file's hash, its identity, the data and recipe it used

All models output logits. The directory is built under a temporary name and renamed when
complete. The teacher depends only on the data file and `distillation.teacher` (+ the data
section); it is cached under `<out_dir>/../.teachers/<key>/` and reused by any recipe with the
same key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trigger import taggers
from trigger.artifacts import TRAIN, check_output, data_identity, stage_output
from trigger.config import CLASS_NAMES, DataConfig, Recipe, save_recipe
from trigger.data.loader import Dataset, JetSample, load_dataset
from trigger.errors import TriggerError
from trigger.io import Log, atomic_path, require_file, write_json

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = [
    "PRUNED_LAYER_PREFIXES",
    "FitSettings",
    "evaluate",
    "fit",
    "fitting_logits",
    "prunable_kernels",
    "sparsity",
    "student_metrics",
    "train_and_compress",
    "train_sources",
    "train_student",
    "train_teacher",
]

N_CLASSES = len(CLASS_NAMES)
# Pruned layers: every hidden Dense (phi_*, context_*, rho_*, dense_*). Not the input quantizer (no
# weights) and not `output_dense`: it is small (width x 5) and each weight feeds a logit
# directly, so zeroing half of it costs accuracy for almost no saving. `sparsity` in
# metrics.json is measured over exactly these kernels.
PRUNED_LAYER_PREFIXES = ("phi_", "context_", "rho_", "dense_")


@dataclass(frozen=True)
class FitSettings:
    """What one `model.fit` needs beyond the data; built from a recipe section."""

    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str = "adam"
    schedule: str = "cosine"
    patience: int = 8
    seed: int = 7
    verbose: int = 2


@dataclass
class Trained:
    model: tf.keras.Model
    history: dict[str, list[float]] = field(default_factory=dict)
    bit_widths: dict[str, float] = field(default_factory=dict)  # HGQ students only


def seed_everything(seed: int) -> None:
    """Same seed, same model: seeds Python, NumPy and TF and makes TF ops deterministic."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _loss(temperature: float, alpha: float, distill: bool):
    """Hard-label cross-entropy, mixed with the KL divergence to the teacher's softened logits.

    `y_true` is the one-hot label, followed by the teacher's logits when distilling:
    loss = (1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)).
    The T^2 keeps the soft-gradient scale independent of T (Hinton et al. 2015).
    """
    import tensorflow as tf

    def loss(y_true, logits):
        labels = y_true[:, :N_CLASSES]
        hard = tf.keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
        if not distill:
            return hard
        log_t = tf.nn.log_softmax(y_true[:, N_CLASSES:] / temperature)
        log_s = tf.nn.log_softmax(logits / temperature)
        kl = tf.reduce_sum(tf.exp(log_t) * (log_t - log_s), axis=-1)
        return (1.0 - alpha) * hard + alpha * temperature**2 * kl

    loss.__name__ = "distillation_loss" if distill else "crossentropy"
    return loss


def accuracy(y_true, logits):
    import tensorflow as tf

    return tf.keras.metrics.categorical_accuracy(y_true[:, :N_CLASSES], logits)


def fit(
    model: tf.keras.Model,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    settings: FitSettings,
    loss: Callable | None = None,
    callbacks: list | None = None,
    monitor_from_epoch: int = 0,
) -> dict[str, list[float]]:
    """Compile and fit on (x, y, weight) arrays; early stopping on the validation loss.

    Early stopping only watches epochs from `monitor_from_epoch` on (the end of the pruning
    ramp), so it can neither stop nor rewind to a model that is not yet fully pruned.
    """
    import tensorflow as tf

    steps = math.ceil(len(train[0]) / settings.batch_size) * settings.epochs
    lr: Any = settings.learning_rate
    if settings.schedule == "cosine":
        lr = tf.keras.optimizers.schedules.CosineDecay(settings.learning_rate, steps)
    optimizer = (
        tf.keras.optimizers.Adam(lr)
        if settings.optimizer == "adam"
        else tf.keras.optimizers.SGD(lr, momentum=0.9)
    )
    model.compile(
        optimizer=optimizer,
        loss=loss or _loss(1.0, 0.0, distill=False),
        weighted_metrics=[accuracy],
    )
    stop = tf.keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=settings.patience,
        restore_best_weights=True,
        start_from_epoch=monitor_from_epoch,
    )
    history = model.fit(
        train[0],
        train[1],
        sample_weight=train[2],
        validation_data=validation,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        callbacks=[*(callbacks or []), stop],
        shuffle=True,
        verbose=settings.verbose,
    )
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def _arrays(sample: JetSample, extra: np.ndarray | None = None):
    y = sample.y if extra is None else np.concatenate([sample.y, extra], axis=1)
    return sample.x, y.astype(np.float32), sample.weight


def evaluate(model: tf.keras.Model, sample: JetSample) -> dict[str, Any]:
    """Accuracy, cross-entropy and one-vs-rest AUC per class on `sample` (unweighted), plus
    the parameter count."""
    from sklearn.metrics import roc_auc_score

    probs = _probabilities(model, sample)
    labels = sample.labels
    auc = {}
    for c, name in enumerate(CLASS_NAMES):
        positive = labels == c
        both = positive.any() and (~positive).any()
        auc[name] = float(roc_auc_score(positive, probs[:, c])) if both else None
    return {
        "accuracy": float(np.mean(probs.argmax(axis=1) == labels)),
        "loss": cross_entropy(probs, labels),
        "auc": auc,
        "parameters": int(sum(w.size for w in network_weights(model))),
    }


def network_weights(model: tf.keras.Model) -> list[np.ndarray]:
    """The network's weights, without an HGQ proxy's quantizer settings (formats, not weights)."""
    return [
        w
        for layer in model.layers
        if type(layer).__name__ != "FixedPointQuantizer"
        for w in layer.get_weights()
    ]


def _probabilities(model: tf.keras.Model, sample: JetSample) -> np.ndarray:
    logits = taggers.predict(model, sample.x).astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    chosen = probs[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(chosen, 1e-12))))


def train_loss(model: tf.keras.Model, data: Dataset) -> float:
    """Cross-entropy on the training split: with the test loss, the generalisation gap."""
    return cross_entropy(_probabilities(model, data.train), data.train.labels)


def prunable_kernels(model: tf.keras.Model) -> list[np.ndarray]:
    """Kernels of the layers pruning acts on (see PRUNED_LAYER_PREFIXES)."""
    return [
        layer.get_weights()[0]
        for layer in taggers.dense_layers(model)
        if layer.name.startswith(PRUNED_LAYER_PREFIXES)
    ]


def sparsity(model: tf.keras.Model) -> float:
    """Fraction of exactly-zero weights over the prunable kernels."""
    kernels = prunable_kernels(model)
    total = sum(k.size for k in kernels)
    return float(sum(int(np.sum(k == 0)) for k in kernels) / total) if total else 0.0


def student_metrics(model: tf.keras.Model, sample: JetSample) -> dict[str, Any]:
    """`evaluate` plus what compression achieved: sparsity and the nonzero weight count."""
    return evaluate(model, sample) | {
        "sparsity": sparsity(model),
        "nonzero_parameters": int(sum(np.count_nonzero(w) for w in network_weights(model))),
    }


def _pruning_schedule(recipe: Recipe, steps_per_epoch: int):
    """Polynomial ramp 0 -> target between the recipe's fractions of all training steps.

    Returns (schedule, first epoch after the ramp). `end - begin` is a multiple of the
    frequency so the last mask update lands exactly on the target sparsity.
    """
    import tensorflow_model_optimization as tfmot

    p = recipe.pruning
    total = steps_per_epoch * recipe.training.epochs
    if total < 2:
        msg = "pruning needs at least 2 training steps; raise training.epochs"
        raise TriggerError(msg)
    if p.end <= p.begin:
        msg = f"pruning.end ({p.end}) must be larger than pruning.begin ({p.begin})"
        raise TriggerError(msg)
    begin = min(int(p.begin * total), total - 2)
    span = max(1, min(round((p.end - p.begin) * total), total - 2 - begin))
    frequency = min(p.frequency, span)
    end = begin + (span // frequency) * frequency
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=p.target_sparsity,
        begin_step=begin,
        end_step=end,
        frequency=frequency,
    )
    return schedule, end // steps_per_epoch + 1


def _wrap_for_pruning(model: tf.keras.Model, schedule) -> tf.keras.Model:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    def wrap(layer):
        if isinstance(layer, tf.keras.layers.Dense) and layer.name.startswith(
            PRUNED_LAYER_PREFIXES
        ):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    return tf.keras.models.clone_model(model, clone_function=wrap)


def _strip_pruning(model: tf.keras.Model) -> tf.keras.Model:
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    # Re-apply each mask: the last optimizer step may have moved masked weights.
    for layer in model.layers:
        if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
            layer.pruning_obj.weight_mask_op()
    return tfmot.sparsity.keras.strip_pruning(model)


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
    history = fit(model, _arrays(data.train), _arrays(data.validation), settings)
    return Trained(model, history)


def _training_settings(recipe: Recipe, verbose: int) -> FitSettings:
    t = recipe.training
    return FitSettings(
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        optimizer=t.optimizer,
        schedule=t.schedule,
        patience=t.patience,
        seed=t.seed,
        verbose=verbose,
    )


def train_float(recipe: Recipe, data: Dataset, verbose: int = 2) -> Trained:
    """The uncompressed reference: student architecture, float, hard labels, no pruning."""
    seed_everything(recipe.training.seed)
    model = taggers.build_float(recipe, data.train.x.shape[-1])
    settings = _training_settings(recipe, verbose)
    history = fit(model, _arrays(data.train), _arrays(data.validation), settings)
    return Trained(model, history)


def train_student(
    recipe: Recipe,
    data: Dataset,
    teacher_logits: tuple[np.ndarray, np.ndarray] | None = None,
    verbose: int = 2,
    float_reference: tf.keras.Model | None = None,
) -> Trained:
    """QAT + pruning + distillation as the recipe switches them on.

    `teacher_logits` are the teacher's logits for (train, validation), needed iff
    `distillation.enabled`; `float_reference` is the trained float twin whose weights the
    student starts from, needed iff `training.init_from_float`. The returned model has no
    pruning wrappers and, when quantized, its kernels and biases replaced by their quantized
    values.
    """
    distill = recipe.distillation.enabled
    if distill and teacher_logits is None:
        msg = "distillation is enabled but no teacher logits were given"
        raise TriggerError(msg)
    if recipe.training.init_from_float and float_reference is None:
        msg = "training.init_from_float is set but no float reference was given"
        raise TriggerError(msg)
    settings = _training_settings(recipe, verbose)
    seed_everything(recipe.training.seed)
    hgq = recipe.quantization.method == "hgq"
    model = taggers.build_student(recipe, data.train.x.shape[-1])
    if recipe.training.init_from_float:
        taggers.copy_dense_weights(float_reference, model)
    callbacks: list = taggers.hgq.training_callbacks(recipe, settings.epochs) if hgq else []
    monitor_from = 0
    if recipe.pruning.enabled:
        import tensorflow_model_optimization as tfmot

        steps_per_epoch = math.ceil(len(data.train) / settings.batch_size)
        schedule, monitor_from = _pruning_schedule(recipe, steps_per_epoch)
        model = _wrap_for_pruning(model, schedule)
        callbacks.append(tfmot.sparsity.keras.UpdatePruningStep())
    extra_train, extra_val = teacher_logits if distill else (None, None)
    d = recipe.distillation
    history = fit(
        model,
        _arrays(data.train, extra_train),
        _arrays(data.validation, extra_val),
        settings,
        loss=_loss(d.temperature, d.alpha, distill),
        callbacks=callbacks,
        monitor_from_epoch=monitor_from,
    )
    if hgq:
        proxy, bits = taggers.hgq.to_firmware_model(model, data.train.x)
        return Trained(proxy, history, bits)
    if recipe.pruning.enabled:
        model = _strip_pruning(model)
    taggers.quantize_weights_in_place(model)
    return Trained(model, history)


def _teacher_data_config(recipe: Recipe) -> DataConfig:
    n = recipe.distillation.teacher.n_constituents
    return recipe.data.model_copy(update={"n_constituents": n})


def _teacher_key(recipe: Recipe, data_path: Path) -> str:
    # Keyed on the data the teacher sees: students over other constituent counts share it.
    stat = data_path.stat()
    data = _teacher_data_config(recipe).model_dump(mode="json")
    payload = {
        "data": data | {"path": str(data_path.resolve())},
        "port": recipe.quantization.input.model_dump(mode="json"),
        "teacher": recipe.distillation.teacher.model_dump(mode="json"),
        "file": [stat.st_size, stat.st_mtime_ns],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _teacher_data(recipe: Recipe, data_path: Path) -> Dataset:
    return load_dataset(_teacher_data_config(recipe), recipe.quantization.input, data_path)


def cached_teacher(
    recipe: Recipe, data_path: Path, cache_dir: Path, log: Log, verbose: int = 2
) -> tuple[tf.keras.Model, Dataset, Path]:
    """Reuse the teacher trained for this data file and teacher section, or train it."""
    data = _teacher_data(recipe, data_path)
    folder = cache_dir / _teacher_key(recipe, data_path)
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
        _save_h5(trained.model, tmp / "teacher.h5")
        data.input_stage.save(tmp / "input_stage.json")
        write_json(tmp / "history.json", trained.history)
    return trained.model, data, folder


def fitting_logits(model: tf.keras.Model, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The model's logits on the train and validation splits: the soft targets to distil."""
    return taggers.predict(model, data.train.x), taggers.predict(model, data.validation.x)


def _save_h5(model: tf.keras.Model, path: Path) -> None:
    """HDF5 on purpose (what hls4ml's Keras 2 reader takes); silence the save-time notes."""
    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are saving your model as an HDF5", UserWarning)
        # QKeras stores its quantizers through keras.constraints.serialize; they round-trip.
        warnings.filterwarnings("ignore", r"The `keras.constraints.serialize\(\)`", UserWarning)
        # An uncompiled model (after strip_pruning) logs "compiled metrics have yet to be built".
        tf_logger.setLevel(logging.ERROR)
        try:
            model.save(path, include_optimizer=False, save_format="h5")
        finally:
            tf_logger.setLevel(level)


TRAIN_SECTIONS = ("data", "architecture", "quantization", "pruning", "distillation", "training")


def train_sources(recipe: Recipe, data_path: str | Path) -> dict[str, str]:
    """What a run is made from: the data file's content and the recipe sections training reads.

    The data file counts by its content, not its path: the same file moved trains the same run.
    """
    unplaced = recipe.model_copy(update={"data": recipe.data.model_copy(update={"path": ""})})
    return {"data": data_identity(data_path), "recipe": unplaced.digest(*TRAIN_SECTIONS)}


def train_and_compress(
    recipe: Recipe,
    data_path: str | Path | None,
    out_dir: str | Path,
    teacher_cache: str | Path | None = None,
    verbose: int = 2,
    log: Log = print,
    replace: bool = False,
) -> Path:
    """Train teacher (if distilling), float reference and student; write the run directory.

    Returns `out_dir`, which appears complete or not at all, sealed with `train_sources`.
    `replace` lets it replace an earlier run there (never anything else). `teacher_cache`
    defaults to `<out_dir>/../.teachers`. `verbose` is Keras's (2: one line per epoch); `log`
    receives a line per stage.
    """
    out_dir = Path(out_dir)
    data_path = require_file(data_path or recipe.data.path)
    recipe = recipe.model_copy(
        update={"data": recipe.data.model_copy(update={"path": str(data_path)})}
    )
    check_output(out_dir, TRAIN, [data_path], replace)
    cache = Path(teacher_cache) if teacher_cache else out_dir.resolve().parent / ".teachers"
    data = load_dataset(recipe.data, recipe.quantization.input, data_path)
    sources = train_sources(recipe, data_path)
    with stage_output(out_dir, TRAIN, sources, inputs=[data_path], replace=replace) as tmp:
        _train_into(tmp, recipe, data_path, data, cache, verbose, log)
    return out_dir


def _train_into(
    out: Path, recipe: Recipe, data_path: Path, data: Dataset, cache: Path, verbose: int, log: Log
) -> None:
    metrics: dict[str, Any] = {"train_jets": len(data.train), "test_jets": len(data.test)}
    histories: dict[str, Any] = {}
    teacher_logits = None
    if recipe.distillation.enabled:
        teacher, teacher_data, folder = cached_teacher(recipe, data_path, cache, log, verbose)
        if not np.array_equal(teacher_data.train.y, data.train.y):
            msg = "teacher and student splits differ: the data file changed while loading"
            raise TriggerError(msg)
        teacher_logits = fitting_logits(teacher, teacher_data)
        metrics["teacher"] = evaluate(teacher, teacher_data.test)
        histories["teacher"] = json.loads((folder / "history.json").read_text())
        shutil.copyfile(folder / "teacher.h5", out / "teacher.h5")
        shutil.copyfile(folder / "input_stage.json", out / "teacher_input_stage.json")
    else:
        log("distillation off: no teacher")
        metrics["teacher"] = None

    log(f"training float reference ({recipe.training.epochs} epochs max)")
    reference = train_float(recipe, data, verbose)
    metrics["float"] = evaluate(reference.model, data.test)
    metrics["float"]["train_loss"] = train_loss(reference.model, data)
    histories["float"] = reference.history
    _save_h5(reference.model, out / "float.h5")

    switches = [
        name
        for name, on in (
            (f"QAT ({recipe.quantization.method})", recipe.quantization.enabled),
            ("pruning", recipe.pruning.enabled),
            ("distillation", recipe.distillation.enabled),
        )
        if on
    ]
    log(f"training student ({', '.join(switches) or 'no compression'})")
    student = train_student(recipe, data, teacher_logits, verbose, reference.model)
    metrics["student"] = student_metrics(student.model, data.test) | student.bit_widths
    metrics["student"]["train_loss"] = train_loss(student.model, data)
    histories["student"] = student.history
    _save_h5(student.model, out / "student.h5")

    save_recipe(recipe, out / "recipe.yaml")
    data.input_stage.save(out / "input_stage.json")
    write_json(out / "history.json", histories)
    write_json(out / "metrics.json", metrics)
