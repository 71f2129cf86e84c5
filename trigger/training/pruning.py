"""Magnitude pruning: which layers, the ramp schedule, wrapping and stripping, sparsity."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trigger import taggers
from trigger.config import Recipe
from trigger.errors import TriggerError

if TYPE_CHECKING:
    import tensorflow as tf

# Pruned layers: every hidden Dense (phi_*, context_*, rho_*, dense_*). Not the input quantizer (no
# weights) and not `output_dense`: it is small (width x 5) and each weight feeds a logit
# directly, so zeroing half of it costs accuracy for almost no saving. `sparsity` in
# metrics.json is measured over exactly these kernels.
PRUNED_LAYER_PREFIXES = ("phi_", "context_", "rho_", "dense_")


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


def pruning_schedule(recipe: Recipe, steps_per_epoch: int, epochs: int):
    """Polynomial ramp 0 -> target between the recipe's fractions of all `epochs`' steps.

    Returns (schedule, first epoch after the ramp). `end - begin` is a multiple of the
    frequency so the last mask update lands exactly on the target sparsity.
    """
    import tensorflow_model_optimization as tfmot

    p = recipe.pruning
    total = steps_per_epoch * epochs
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


def wrap_for_pruning(model: tf.keras.Model, schedule) -> tf.keras.Model:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    def wrap(layer):
        if isinstance(layer, tf.keras.layers.Dense) and layer.name.startswith(
            PRUNED_LAYER_PREFIXES
        ):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    return tf.keras.models.clone_model(model, clone_function=wrap)


def strip_pruning(model: tf.keras.Model) -> tf.keras.Model:
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    # Re-apply each mask: the last optimizer step may have moved masked weights.
    for layer in model.layers:
        if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
            layer.pruning_obj.weight_mask_op()
    return tfmot.sparsity.keras.strip_pruning(model)
