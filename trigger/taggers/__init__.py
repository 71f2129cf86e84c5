"""Jet taggers built from a recipe: the QKeras student, its float twin, and the teacher.

Layer names are a contract with the hls4ml stage (Deep Sets shown; the MLP replaces the phi /
pool / rho part by `flatten` and `dense_{i}`):

    input -> input_quant -> phi_{i}, phi_{i}_act ... -> pool -> rho_{j}, rho_{j}_act ...
          -> output_dense -> output

Outputs are logits: softmax is applied in software for metrics, never in the firmware. Every
`quantized_bits` has alpha=1, so each quantizer is a fixed grid k * 2^-(bits - 1 - integer).
With quantization switched off the same names hold plain `Dense` / `Activation` layers.
A context tagger (`kind: context`) follows each of the first `context_blocks` phi layers b by a
global-context block that adds the jet's context back onto every candidate:

    phi_{b}_act -> context_{b}_pool (mean over candidates) -> context_{b}, context_{b}_act
          -> context_{b}_expand (Reshape to one row) -> context_{b}_repeat (UpSampling1D to N)
    context_{b}_add = phi_{b}_act + context_{b}_repeat -> phi_{b+1} ...

A transformer teacher replaces phi by `embed_*` and `block{b}_*` attention blocks; it is never
quantized or converted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trigger.config import CLASS_NAMES, ArchitectureConfig, QuantizerConfig, Recipe
from trigger.errors import TriggerError
from trigger.taggers import hgq

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

__all__ = [
    "build_float",
    "build_student",
    "build_teacher",
    "custom_objects",
    "dense_layers",
    "hgq",
    "load_model",
    "predict",
    "quantize_weights_in_place",
]

N_CLASSES = len(CLASS_NAMES)


def _bits(q: QuantizerConfig):
    from qkeras import quantized_bits

    return quantized_bits(q.bits, q.integer, alpha=1)


def _dense_block(
    x, name: str, width: int, recipe: Recipe | None, activation: bool, bias: bool = True
):
    """One Dense (+ ReLU) block; QKeras when `recipe` is given, float Keras when it is None.

    The single builder behind phi, rho, the MLP layers and the output layer.
    """
    import tensorflow as tf

    if recipe is None:
        x = tf.keras.layers.Dense(width, use_bias=bias, name=name)(x)
        return tf.keras.layers.Activation("relu", name=f"{name}_act")(x) if activation else x

    from qkeras import QActivation, QDense, quantized_relu

    q = recipe.quantization.for_layer(name)
    x = QDense(
        width,
        kernel_quantizer=_bits(q.weight),
        bias_quantizer=_bits(q.bias) if bias else None,
        use_bias=bias,
        name=name,
    )(x)
    if activation:
        act = quantized_relu(q.activation.bits, q.activation.integer)
        x = QActivation(act, name=f"{name}_act")(x)
    return x


def _quantizer(x, name: str, q: QuantizerConfig, quantized: bool):
    import tensorflow as tf

    if not quantized:
        return tf.keras.layers.Activation("linear", name=name)(x)
    from qkeras import QActivation

    return QActivation(_bits(q), name=name)(x)


def _attention_blocks(x, architecture: ArchitectureConfig):
    """Float pre-norm transformer encoder over the constituents (teachers only).

    Padded constituents are attended to like the others: their embedding is a constant the
    network learns to discount, which keeps the model free of custom masking layers.
    """
    import tensorflow as tf

    layers = tf.keras.layers
    width = architecture.embed
    x = _dense_block(x, "embed_0", width, None, activation=True)
    x = _dense_block(x, "embed_1", width, None, activation=False)
    for b in range(architecture.blocks):
        h = layers.LayerNormalization(name=f"block{b}_norm_0")(x)
        h = layers.MultiHeadAttention(
            architecture.heads, width // architecture.heads, name=f"block{b}_attention"
        )(h, h)
        x = layers.Add(name=f"block{b}_add_0")([x, h])
        h = layers.LayerNormalization(name=f"block{b}_norm_1")(x)
        h = _dense_block(h, f"block{b}_ffn_0", 2 * width, None, activation=True)
        h = _dense_block(h, f"block{b}_ffn_1", width, None, activation=False)
        x = layers.Add(name=f"block{b}_add_1")([x, h])
    return layers.LayerNormalization(name="encoder_norm")(x)


def _context_block(x, b: int, recipe: Recipe | None):
    """x + relu(dense(mean of x over candidates)), the context repeated onto every candidate.

    The mean is hls4ml's global average pooling (an exact shift for N a power of two); the
    repeat is a Reshape and an UpSampling1D (hls4ml's Resize), so both operands of the Add have
    the candidates' shape, as every hls4ml io type needs.
    """
    import tensorflow as tf

    layers = tf.keras.layers
    n, width = int(x.shape[1]), int(x.shape[2])
    c = layers.GlobalAveragePooling1D(name=f"context_{b}_pool")(x)
    c = _dense_block(c, f"context_{b}", width, recipe, activation=True)
    c = layers.Reshape((1, width), name=f"context_{b}_expand")(c)
    c = layers.UpSampling1D(n, name=f"context_{b}_repeat")(c)
    return layers.Add(name=f"context_{b}_add")([x, c])


def _per_constituent(x, architecture: ArchitectureConfig, recipe: Recipe | None):
    """The layers before pooling: phi (Deep Sets, context) or attention blocks (transformer)."""
    if architecture.kind == "transformer":
        return _attention_blocks(x, architecture)
    blocks = architecture.context_blocks if architecture.kind == "context" else 0
    for i, width in enumerate(architecture.phi):
        x = _dense_block(x, f"phi_{i}", width, recipe, activation=True, bias=not architecture.mask)
        if i < blocks:
            x = _context_block(x, i, recipe)
    return x


def _build(
    architecture: ArchitectureConfig,
    n_constituents: int,
    n_features: int,
    recipe: Recipe | None,
    name: str,
) -> tf.keras.Model:
    """Deep Sets, context, MLP or (float only) transformer; quantized when `recipe` is not
    None."""
    import tensorflow as tf

    layers = tf.keras.layers
    quantized = recipe is not None
    qconf = recipe.quantization if recipe is not None else None
    inputs = layers.Input(shape=(n_constituents, n_features), name="input")
    x = _quantizer(inputs, "input_quant", qconf.input if qconf else None, quantized)
    if architecture.kind == "mlp":
        x = layers.Flatten(name="flatten")(x)
        for i, width in enumerate(architecture.dense):
            x = _dense_block(x, f"dense_{i}", width, recipe, activation=True)
    else:
        x = _per_constituent(x, architecture, recipe)
        pool = {"mean": layers.GlobalAveragePooling1D, "max": layers.GlobalMaxPooling1D}
        x = pool[architecture.pooling](name="pool")(x)
        for j, width in enumerate(architecture.rho):
            x = _dense_block(x, f"rho_{j}", width, recipe, activation=True)
    x = _dense_block(x, "output_dense", N_CLASSES, recipe, activation=False)
    outputs = _quantizer(x, "output", qconf.output if qconf else None, quantized)
    return tf.keras.Model(inputs, outputs, name=name)


def build_student(recipe: Recipe, n_features: int) -> tf.keras.Model:
    """The model that becomes firmware: QKeras (or HGQ, `quantization.method: hgq`) if
    `quantization.enabled`, else float layers."""
    if recipe.quantization.enabled and recipe.quantization.method == "hgq":
        return hgq.build_student(recipe, n_features)
    quantized = recipe if recipe.quantization.enabled else None
    return _build(recipe.architecture, recipe.data.n_constituents, n_features, quantized, "student")


def build_float(recipe: Recipe, n_features: int) -> tf.keras.Model:
    """The student's architecture with plain Dense/ReLU: the unquantized reference."""
    return _build(recipe.architecture, recipe.data.n_constituents, n_features, None, "float")


def build_teacher(recipe: Recipe, n_features: int) -> tf.keras.Model:
    """A larger float network over `distillation.teacher.n_constituents` constituents."""
    teacher = recipe.distillation.teacher
    return _build(teacher.architecture, teacher.n_constituents, n_features, None, "teacher")


def dense_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The Dense / QDense layers of a model, in order (the layers that hold weights)."""
    import tensorflow as tf

    return [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)]


def copy_dense_weights(source: tf.keras.Model, target: tf.keras.Model) -> None:
    """Give each Dense / QDense of `target` the weights of the same-named layer of `source`.

    The float twin and the student share layer names and shapes (`_build`), so a QAT student
    can start from the trained float network.
    """
    weights = {layer.name: layer.get_weights() for layer in dense_layers(source)}
    for layer in dense_layers(target):
        if layer.name not in weights:
            msg = f"internal: the float reference has no layer {layer.name!r}"
            raise TriggerError(msg)
        # Kernel and bias only: an HGQ layer also holds its learned bit widths.
        layer.kernel.assign(weights[layer.name][0])
        if layer.use_bias:
            layer.bias.assign(weights[layer.name][1])


def quantize_weights_in_place(model: tf.keras.Model) -> None:
    """Replace each QDense kernel and bias by its quantized value (a no-op for float layers).

    The quantizers are idempotent, so outputs do not change; the stored weights then lie on
    the firmware's grid, which hls4ml needs where it rewrites a QDense and drops its
    quantizers (the per-constituent Dense becomes a pointwise Conv1D).
    """
    import numpy as np

    for layer in dense_layers(model):
        kernel_q = getattr(layer, "kernel_quantizer_internal", None)
        bias_q = getattr(layer, "bias_quantizer_internal", None)
        if kernel_q is None:
            continue
        kernel, *bias = layer.get_weights()
        kernel = np.asarray(kernel_q(kernel), np.float32)
        if bias and bias_q is not None:
            bias = [np.asarray(bias_q(bias[0]), np.float32)]
        layer.set_weights([kernel, *bias])


def custom_objects() -> dict[str, Any]:
    """What `keras.models.load_model` needs for any model this module builds."""
    from qkeras.utils import _add_supported_quantized_objects

    objects: dict[str, Any] = hgq.custom_objects()
    _add_supported_quantized_objects(objects)
    return objects


def load_model(path: str | Path) -> tf.keras.Model:
    """Load a saved teacher, float or student model (uncompiled)."""
    path = Path(path)
    if not path.is_file():
        msg = f"model not found: {path}"
        raise TriggerError(msg)
    import tensorflow as tf

    try:
        return tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        msg = f"{path}: not a readable Keras model ({reason})"
        raise TriggerError(msg) from None


def predict(model: tf.keras.Model, x: np.ndarray) -> np.ndarray:
    """Logits for a batch of jets, as the model computes them (float32, no softmax)."""
    import tensorflow as tf

    # Predicting with several models in one process makes Keras warn about tf.function
    # retracing: expected here, and noise to users.
    tf.get_logger().setLevel("ERROR")
    return model.predict(x, batch_size=4096, verbose=0)
