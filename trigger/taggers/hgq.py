"""The HGQ student (`quantization.method: hgq`): High Granularity Quantization (hgq 0.2).

The same architecture family and layer names as the QKeras student (`trigger.taggers`), built
from HGQ layers: every weight learns its own bit width (zero bits prune it), every layer's
activations one bit width shared by all candidates and neurons (`skip_dims: all`), so the
tagger stays permutation invariant and each layer keeps one fixed-point format, as the
firmware plan needs. A `Signature` declares the input port's format: the input stage already
rounds the features onto it (`trigger.inputs`), so no quantizer precedes the first layer.

After training, `to_firmware_model` records each activation's range on the training jets and
returns HGQ's proxy model: plain Keras layers (weights on their learned grids) and
`FixedPointQuantizer` layers with saturation (never wrap-around), the model that becomes
firmware and `student.h5`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trigger.config import CLASS_NAMES, Recipe

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

N_CLASSES = len(CLASS_NAMES)


def _quantizer_configs(recipe: Recipe) -> tuple[dict[str, Any], dict[str, Any]]:
    """(kernel, activation) quantizer settings: per-weight and per-layer bit widths."""
    from HGQ.utils import get_default_kq_conf, get_default_paq_conf

    bits = recipe.quantization.hgq.init_bits
    kernel = get_default_kq_conf() | {"init_bw": bits}
    activation = get_default_paq_conf() | {"init_bw": bits, "skip_dims": "all"}
    return kernel, activation


def build_student(recipe: Recipe, n_features: int) -> tf.keras.Model:
    """Deep Sets, context or MLP from HGQ layers, the names of `trigger.taggers`' student.

    A context block is HGQ's pooling over all candidates, an `HDense` with ReLU, Keras's
    Reshape and UpSampling1D (which move values without changing them) and an `HAdd`, whose
    quantizer learns the sum's format like any other activation's.
    """
    import tensorflow as tf
    from HGQ import HDense, PAvgPool1D, PFlatten, PMaxPool1D, PReshape, Signature
    from HGQ.layers.misc import HAdd

    kernel, activation = _quantizer_configs(recipe)
    beta = recipe.quantization.hgq.beta_start or recipe.quantization.hgq.beta
    port = recipe.quantization.input
    architecture, n = recipe.architecture, recipe.data.n_constituents

    def dense(x, name: str, width: int, relu: bool):
        return HDense(width, activation="relu" if relu else None, beta=beta, kq_conf=kernel,
                      paq_conf=activation, name=name)(x)  # fmt: skip

    inputs = tf.keras.layers.Input(shape=(n, n_features), name="input")
    x = Signature(1, port.bits, port.integer + 1, name="input_quant")(inputs)
    if architecture.kind == "mlp":
        x = PFlatten(name="flatten")(x)
        for i, width in enumerate(architecture.dense):
            x = dense(x, f"dense_{i}", width, relu=True)
    else:
        blocks = architecture.context_blocks if architecture.kind == "context" else 0
        for i, width in enumerate(architecture.phi):
            x = dense(x, f"phi_{i}", width, relu=True)
            if i < blocks:
                c = PFlatten(name=f"context_{i}_pool")(PAvgPool1D(n, name=f"context_{i}_window")(x))
                c = dense(c, f"context_{i}", width, relu=True)
                c = PReshape((1, width), name=f"context_{i}_expand")(c)
                c = tf.keras.layers.UpSampling1D(n, name=f"context_{i}_repeat")(c)
                add = HAdd(beta=beta, paq_conf=activation, name=f"context_{i}_add")
                x = add([x, c])
        pool = PAvgPool1D if architecture.pooling == "mean" else PMaxPool1D
        x = PFlatten(name="pool")(pool(n, name="pool_window")(x))
        for j, width in enumerate(architecture.rho):
            x = dense(x, f"rho_{j}", width, relu=True)
    outputs = dense(x, "output_dense", N_CLASSES, relu=False)
    return tf.keras.Model(inputs, outputs, name="student")


def set_beta(model: tf.keras.Model, beta: float) -> None:
    """The resource penalty's strength in every HGQ layer."""
    for layer in model.layers:
        if hasattr(layer, "beta"):
            layer.beta.assign(beta)


def training_callbacks(recipe: Recipe, epochs: int) -> list[Any]:
    """HGQ's range bookkeeping, and the penalty raised geometrically from `beta_start`."""
    import tensorflow as tf
    from HGQ import FreeBOPs, ResetMinMax

    h = recipe.quantization.hgq
    callbacks: list[Any] = [ResetMinMax(), FreeBOPs()]
    if h.beta_start is None or epochs < 2:
        return callbacks

    class GeometricBeta(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            set_beta(self.model, h.beta_start * (h.beta / h.beta_start) ** (epoch / (epochs - 1)))

    return [*callbacks, GeometricBeta()]


def to_firmware_model(
    model: tf.keras.Model, x_train: np.ndarray
) -> tuple[tf.keras.Model, dict[str, float]]:
    """Activation ranges from the training jets, then HGQ's proxy model with saturation,
    and the bit widths the training arrived at."""
    from HGQ import to_proxy_model, trace_minmax

    trace_minmax(model, x_train, verbose=False)
    return to_proxy_model(model, aggressive=False), bit_widths(model)


def bit_widths(model: tf.keras.Model) -> dict[str, float]:
    """Of a trained HGQ model with traced ranges: mean weight bits, mean activation bits,
    fraction of zero-bit weights."""
    import numpy as np

    layers = [layer for layer in model.layers if hasattr(layer, "kernel_bw_exact")]
    kernels = np.concatenate([np.ravel(layer.kernel_bw_exact) for layer in layers])
    activations = np.concatenate([np.ravel(layer.act_bw_exact) for layer in layers])
    return {
        "mean_weight_bits": float(kernels.mean()),
        "mean_activation_bits": float(activations.mean()),
        "zero_bit_weight_fraction": float(np.mean(kernels == 0)),
    }


def custom_objects() -> dict[str, Any]:
    """What loading a saved HGQ proxy model needs."""
    from HGQ.proxy import FixedPointQuantizer

    return {"FixedPointQuantizer": FixedPointQuantizer}
