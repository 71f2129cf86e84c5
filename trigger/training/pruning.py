"""Pruning: which layers, sparsity; magnitude pruning's ramp schedule, wrapping and stripping;
lottery rounds with rewinding and the masks that hold pruned weights at zero."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from trigger import taggers
from trigger.config import PruningConfig, Recipe
from trigger.errors import TriggerError

if TYPE_CHECKING:
    import tensorflow as tf

# Pruned layers: every hidden Dense (phi_*, context_*, rho_*, dense_*). Not the input quantizer (no
# weights) and not `output_dense`: it is small (width x 5) and each weight feeds a logit
# directly, so zeroing half of it costs accuracy for almost no saving. `sparsity` in
# metrics.json is measured over exactly these kernels.
PRUNED_LAYER_PREFIXES = ("phi_", "context_", "rho_", "dense_")


def pruned_layers(model: tf.keras.Model) -> list:
    """The layers pruning acts on (see PRUNED_LAYER_PREFIXES)."""
    return [
        layer
        for layer in taggers.dense_layers(model)
        if layer.name.startswith(PRUNED_LAYER_PREFIXES)
    ]


def with_target_sparsity(recipe: Recipe, model: tf.keras.Model) -> Recipe:
    """The recipe with `pruning.target_nonzero`, if set, turned into the `target_sparsity` that
    leaves `model`'s pruned kernels that many nonzero weights."""
    target = recipe.pruning.target_nonzero
    if not recipe.pruning.enabled or target is None:
        return recipe
    total = sum(kernel.size for kernel in prunable_kernels(model))
    if target >= total:
        msg = (
            f"pruning.target_nonzero {target:,} is not below the {total:,} weights pruning acts "
            "on in this architecture: widen it or lower the target"
        )
        raise TriggerError(msg)
    pruning = recipe.pruning.model_copy(update={"target_sparsity": 1.0 - target / total})
    return recipe.model_copy(update={"pruning": pruning})


def prunable_kernels(model: tf.keras.Model) -> list[np.ndarray]:
    """Kernels of the layers pruning acts on."""
    return [layer.get_weights()[0] for layer in pruned_layers(model)]


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


@dataclass(frozen=True)
class Mask:
    """One layer's mask: 1 where a kernel weight (or a bias) survives, 0 where pruned. Pruning
    weights leaves every bias; pruning a neuron takes its kernel column and its bias."""

    kernel: np.ndarray
    bias: np.ndarray


Masks = dict[str, Mask]  # by layer name
# One training of a lottery: (model, epoch it starts at, epoch early stopping may act from,
# extra callbacks) -> history.
TrainRound = Callable[["tf.keras.Model", int, int, list], dict[str, list[float]]]


def prune_smallest(kernel: np.ndarray, mask: np.ndarray, fraction: float) -> np.ndarray:
    """The mask with `fraction` of the kernel pruned: what is pruned stays pruned, then the
    survivors of smallest magnitude."""
    magnitude = np.where(mask > 0, np.abs(kernel), -1.0).ravel()
    order = np.argsort(magnitude, kind="stable")
    pruned = max(round(fraction * kernel.size), int(np.sum(mask == 0)))
    out = np.ones(kernel.size, dtype=np.float32)
    out[order[:pruned]] = 0.0
    return out.reshape(kernel.shape)


def _unpruned(model: tf.keras.Model) -> Masks:
    return {
        layer.name: Mask(np.ones(layer.kernel.shape, np.float32), np.ones(layer.units, np.float32))
        for layer in pruned_layers(model)
    }


def _pruned_further(model: tf.keras.Model, masks: Masks, fraction: float, structure: str) -> Masks:
    """Each layer with `fraction` of its weights (or of its neurons, by the norm of their
    surviving incoming weights; one neuron always stays) pruned."""
    out = {}
    for layer in pruned_layers(model):
        kernel, mask = layer.kernel.numpy(), masks[layer.name]
        if structure == "weights":
            out[layer.name] = Mask(prune_smallest(kernel, mask.kernel, fraction), mask.bias)
            continue
        norms = np.sqrt(np.sum((kernel * mask.kernel) ** 2, axis=0))
        units = kernel.shape[1]
        keep = prune_smallest(norms, mask.bias, min(fraction, (units - 1) / units))
        out[layer.name] = Mask(np.broadcast_to(keep, kernel.shape).copy(), keep)
    return out


def _apply(layer, mask: Mask) -> None:
    layer.kernel.assign(layer.kernel * mask.kernel)
    if layer.use_bias:
        layer.bias.assign(layer.bias * mask.bias)


def rewind(model: tf.keras.Model, weights: list[np.ndarray], masks: Masks) -> None:
    """Every weight back to `weights`, then the pruned ones to zero."""
    model.set_weights(weights)
    for layer in pruned_layers(model):
        _apply(layer, masks[layer.name])


def _mask_keeper(model: tf.keras.Model, masks: Masks):
    """A callback that zeroes the pruned weights after every step: the optimizer moves them,
    the next step must not see them."""
    import tensorflow as tf

    layers = pruned_layers(model)

    class KeepMasks(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            for layer in layers:
                _apply(layer, masks[layer.name])

    return KeepMasks()


def _snapshot_at(epoch: int):
    """A callback holding the model's weights after `epoch` epochs (0: before training)."""
    import tensorflow as tf

    class Snapshot(tf.keras.callbacks.Callback):
        weights: list[np.ndarray] | None = None

        def on_train_begin(self, logs=None):
            if epoch == 0:
                self.weights = self.model.get_weights()

        def on_epoch_end(self, index, logs=None):
            if index + 1 == epoch:
                self.weights = self.model.get_weights()

    return Snapshot()


def train_lottery(
    model: tf.keras.Model, train_round: TrainRound, pruning: PruningConfig
) -> tuple[dict[str, list[float]], Masks]:
    """Iterative magnitude pruning with rewinding: a dense training, then `pruning.rounds`
    times: prune a fixed fraction of each layer's surviving weights (or neurons, with
    `pruning.structure: neurons`), rewind the survivors to their weights after
    `pruning.rewind_epoch` epochs, retrain from that epoch with the pruned weights held at
    zero. Returns the last round's history and the masks; `model` ends at
    `pruning.target_sparsity`."""
    snapshot = _snapshot_at(pruning.rewind_epoch)
    # Early stopping may not end the dense training before the rewind point.
    train_round(model, 0, pruning.rewind_epoch, [snapshot])
    start = snapshot.weights
    masks = _unpruned(model)
    survive = (1.0 - pruning.target_sparsity) ** (1.0 / pruning.rounds)
    history: dict[str, list[float]] = {}
    for round_ in range(1, pruning.rounds + 1):
        fraction = pruning.target_sparsity if round_ == pruning.rounds else 1 - survive**round_
        masks = _pruned_further(model, masks, fraction, pruning.structure)
        rewind(model, start, masks)
        keeper = _mask_keeper(model, masks)
        history = train_round(model, pruning.rewind_epoch, pruning.rewind_epoch, [keeper])
    return history, masks


def without_pruned_neurons(model: tf.keras.Model, recipe: Recipe, masks: Masks) -> tf.keras.Model:
    """The same network without its pruned neurons: narrower layers, the same outputs (a
    pruned neuron has a zero kernel column and a zero bias, so it outputs 0 and adds nothing
    downstream)."""
    keep = {name: np.flatnonzero(mask.bias) for name, mask in masks.items()}
    a = recipe.architecture

    def widths(prefix: str, layers: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(len(keep[f"{prefix}_{i}"]) for i in range(len(layers)))

    narrow = a.model_copy(
        update={"phi": widths("phi", a.phi), "rho": widths("rho", a.rho)}
        if a.kind == "deepsets"
        else {"dense": widths("dense", a.dense)}
    )
    n_features = model.input_shape[-1]
    small = taggers.build_student(recipe.model_copy(update={"architecture": narrow}), n_features)
    rows: np.ndarray | slice = slice(None)
    for big, little in zip(taggers.dense_layers(model), taggers.dense_layers(small), strict=True):
        kernel, *bias = big.get_weights()
        columns = keep.get(big.name, np.arange(kernel.shape[1]))
        little.set_weights([kernel[rows][:, columns], *(b[columns] for b in bias)])
        rows = columns
    return small
