"""One `model.fit` from a recipe section, and what every trained model is measured by."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from trigger import taggers
from trigger.config import CLASS_NAMES, Recipe
from trigger.data.loader import Dataset, JetSample

if TYPE_CHECKING:
    import tensorflow as tf

N_CLASSES = len(CLASS_NAMES)


class Batches(Protocol):
    """Training data made batch by batch: (x, y, weight) per index, redrawn each epoch."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def on_epoch_end(self) -> None: ...


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


def labelled_accuracy():
    """Weighted accuracy over the rows that carry a label: the teacher's extra jets (all-zero
    label rows) count neither as hits nor as misses."""
    import tensorflow as tf

    class LabelledAccuracy(tf.keras.metrics.Mean):
        def update_state(self, y_true, logits, sample_weight=None):
            labels = y_true[:, :N_CLASSES]
            weight = tf.reduce_sum(labels, axis=-1)  # 1 with a label, 0 without
            if sample_weight is not None:
                weight *= tf.reshape(tf.cast(sample_weight, weight.dtype), [-1])
            hits = tf.keras.metrics.categorical_accuracy(labels, logits)
            return super().update_state(hits, weight)

    return LabelledAccuracy(name="accuracy")


def training_settings(recipe: Recipe, verbose: int, distilled: bool = False) -> FitSettings:
    """`training`'s settings; a `distilled` student takes `distillation.epochs` and
    `.patience` where they are set."""
    t, d = recipe.training, recipe.distillation
    return FitSettings(
        epochs=recipe.student_epochs() if distilled else t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        optimizer=t.optimizer,
        schedule=t.schedule,
        patience=(distilled and d.patience) or t.patience,
        seed=t.seed,
        verbose=verbose,
    )


def fit(
    model: tf.keras.Model,
    train: tuple[np.ndarray, np.ndarray, np.ndarray] | Batches,
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    settings: FitSettings,
    loss: Callable | None = None,
    callbacks: list | None = None,
    monitor_from_epoch: int = 0,
    initial_epoch: int = 0,
) -> dict[str, list[float]]:
    """Compile and fit on (x, y, weight) arrays, or on `Batches` that yield them batch by batch
    (`ConsistentBatches`); early stopping on the validation loss.

    Early stopping only watches epochs from `monitor_from_epoch` on (the end of the pruning
    ramp), so it can neither stop nor rewind to a model that is not yet fully pruned.
    `initial_epoch` > 0 resumes a training at that epoch: the learning-rate schedule goes on
    from there (a lottery round retraining from its rewind point).
    """
    import tensorflow as tf

    from trigger.training.distill import distillation_loss

    arrays_given = isinstance(train, tuple)
    batches = math.ceil(len(train[0]) / settings.batch_size) if arrays_given else len(train)
    steps = batches * settings.epochs
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
        loss=loss or distillation_loss(1.0, 0.0, distill=False),
        weighted_metrics=[labelled_accuracy()],
    )
    optimizer.iterations.assign(initial_epoch * batches)
    stop = tf.keras.callbacks.EarlyStopping(
        monitor="val_loss",
        patience=settings.patience,
        restore_best_weights=True,
        start_from_epoch=monitor_from_epoch,
    )
    if arrays_given:
        data = {"x": train[0], "y": train[1], "sample_weight": train[2], "shuffle": True}
        data["batch_size"] = settings.batch_size
    else:  # the batches shuffle themselves, reproducibly
        data = {"x": _keras_sequence(train), "shuffle": False}
    history = model.fit(
        **data,
        validation_data=validation,
        epochs=settings.epochs,
        initial_epoch=initial_epoch,
        callbacks=[*(callbacks or []), stop],
        verbose=settings.verbose,
    )
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def _keras_sequence(batches: Batches):
    import tensorflow as tf

    class Sequence(tf.keras.utils.Sequence):
        def __len__(self) -> int:
            return len(batches)

        def __getitem__(self, index: int):
            return batches[index]

        def on_epoch_end(self) -> None:
            batches.on_epoch_end()

    return Sequence()


def arrays(sample: JetSample, extra: np.ndarray | None = None):
    """(x, y, weight) of `sample`; `extra` columns (the teacher's logits) follow the label."""
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


def save_h5(model: tf.keras.Model, path: Path) -> None:
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
