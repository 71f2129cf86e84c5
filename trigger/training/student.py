"""The float reference and the compressed student (QAT, pruning, distillation)."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from trigger import taggers
from trigger.config import Recipe
from trigger.data.loader import Dataset, JetSample
from trigger.errors import TriggerError
from trigger.training.distill import ConsistentBatches, Teacher, distillation_loss
from trigger.training.fit import (
    FitSettings,
    Trained,
    arrays,
    evaluate,
    fit,
    network_weights,
    seed_everything,
    training_settings,
)
from trigger.training.pruning import (
    pruning_schedule,
    sparsity,
    strip_pruning,
    train_lottery,
    with_target_sparsity,
    without_pruned_neurons,
    wrap_for_pruning,
)

if TYPE_CHECKING:
    import tensorflow as tf


def train_float(recipe: Recipe, data: Dataset, verbose: int = 2) -> Trained:
    """The uncompressed reference: student architecture, float, hard labels, no pruning."""
    seed_everything(recipe.training.seed)
    model = taggers.build_float(recipe, data.train.x.shape[-1])
    settings = training_settings(recipe, verbose)
    history = fit(model, arrays(data.train), arrays(data.validation), settings)
    return Trained(model, history)


def train_student(
    recipe: Recipe,
    data: Dataset,
    teacher: Teacher | None = None,
    verbose: int = 2,
    float_reference: tf.keras.Model | None = None,
) -> Trained:
    """QAT + pruning + distillation as the recipe switches them on.

    `teacher` (needed iff `distillation.enabled`) gives the soft targets: its logits on the
    fixed training jets, or, with `distillation.augment`, on each step's mirrored jets.
    `float_reference` is the trained float twin whose weights the student starts from, needed
    iff `training.init_from_float`. The returned model has no pruning wrappers and, when
    quantized, its kernels and biases replaced by their quantized values.
    """
    distill = recipe.distillation.enabled
    if distill and teacher is None:
        msg = "distillation is enabled but no teacher was given"
        raise TriggerError(msg)
    if recipe.training.init_from_float and float_reference is None:
        msg = "training.init_from_float is set but no float reference was given"
        raise TriggerError(msg)
    settings = training_settings(recipe, verbose, distilled=distill)
    seed_everything(recipe.training.seed)
    hgq = recipe.quantization.method == "hgq"
    model = taggers.build_student(recipe, data.train.x.shape[-1])
    recipe = with_target_sparsity(recipe, model)
    if recipe.training.init_from_float:
        taggers.copy_dense_weights(float_reference, model)
    callbacks: list = taggers.hgq.training_callbacks(recipe, settings.epochs) if hgq else []
    monitor_from = 0
    p = recipe.pruning
    magnitude = p.enabled and p.method == "magnitude"
    if magnitude:
        import tensorflow_model_optimization as tfmot

        steps_per_epoch = math.ceil(len(data.train) / settings.batch_size)
        schedule, monitor_from = pruning_schedule(recipe, steps_per_epoch, settings.epochs)
        model = wrap_for_pruning(model, schedule)
        callbacks.append(tfmot.sparsity.keras.UpdatePruningStep())
    d = recipe.distillation
    fitting = _fitting_data(recipe, data, teacher if distill else None, settings)
    loss = distillation_loss(d.temperature, d.alpha, distill)

    def train_round(model, initial_epoch: int, monitor_from: int, extra: list) -> dict:
        return fit(model, *fitting, settings, loss=loss, callbacks=[*callbacks, *extra],
                   monitor_from_epoch=monitor_from, initial_epoch=initial_epoch)  # fmt: skip

    if p.enabled and p.method == "lottery":
        history, masks = train_lottery(model, train_round, p)
        if p.structure == "neurons":
            model = without_pruned_neurons(model, recipe, masks)
    else:
        history = train_round(model, 0, monitor_from, [])
    if hgq:
        proxy, bits = taggers.hgq.to_firmware_model(model, data.train.x)
        return Trained(proxy, history, bits)
    if magnitude:
        model = strip_pruning(model)
    taggers.quantize_weights_in_place(model)
    return Trained(model, history)


def _fitting_data(recipe: Recipe, data: Dataset, teacher: Teacher | None, settings: FitSettings):
    """(train, validation) for `fit`: labels alone, labels + the teacher's logits on the fixed
    jets, or consistent augmented batches; the teacher's extra jets join the training jets.
    Validation jets are never transformed."""
    if teacher is None:
        return arrays(data.train), arrays(data.validation)
    validation = arrays(data.validation, teacher.logits(teacher.data.validation))
    student, view = teacher.training_jets(data)
    augment = recipe.distillation.augment
    if not augment:
        return arrays(student.train, teacher.logits(view.train)), validation
    batches = ConsistentBatches(student, dataclasses.replace(teacher, data=view), augment,
                                settings.batch_size, settings.seed)  # fmt: skip
    return batches, validation


def student_metrics(model: tf.keras.Model, sample: JetSample) -> dict[str, Any]:
    """`evaluate` plus what compression achieved: sparsity and the nonzero weight count."""
    return evaluate(model, sample) | {
        "sparsity": sparsity(model),
        "nonzero_parameters": int(sum(np.count_nonzero(w) for w in network_weights(model))),
    }
