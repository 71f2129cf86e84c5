"""HGQ student (the proxy model of `trigger.taggers.hgq`) -> the same `Plan` as a QKeras one.

HGQ's proxy model is plain Keras (`Dense`, `ReLU`, pooling, `Flatten`) with a
`FixedPointQuantizer` after each layer whose output it quantizes. The plan rebuilds the chain
without the quantizers, each one's format becoming the result type of the layer before it (the
cast from accumulator to result does exactly what the quantizer does: truncation or rounding,
then saturation), so hls4ml, the fast emulator and the da4ml trace see the formats they see for
QKeras. The weights are on per-weight grids; their layer format is the narrowest one holding
all of them exactly.

Each quantizer must hold one format for all its elements (the student's `skip_dims: all`);
HGQ's per-element formats are refused with the layer named.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from trigger.config import FirmwareConfig
from trigger.errors import TriggerError
from trigger.hls.precision import (
    Fixed,
    dense_accumulation,
    mean_pool_formats,
    smallest_holding,
    sum_accumulation,
)

QUANTIZER = "FixedPointQuantizer"
HGQ_LAYERS = ("InputLayer", QUANTIZER, "Dense", "ReLU", "AveragePooling1D", "MaxPooling1D",
              "Flatten", "Reshape", "UpSampling1D", "Add")  # fmt: skip
ROUNDING_MODES = ("TRN", "RND", "RND_CONV")  # ap_fixed's names, which HGQ's quantizer uses
SATURATION_MODES = ("SAT", "WRAP")


def is_hgq(model: Any) -> bool:
    """Whether `model` is an HGQ proxy model (it has fixed-point quantizer layers)."""
    return any(type(layer).__name__ == QUANTIZER for layer in model.layers)


def quantizer_format(layer: Any) -> Fixed:
    """The one ap_fixed format of a `FixedPointQuantizer` layer."""
    config = layer.get_config()
    k, b, i = (np.unique(np.asarray(v.numpy())) for v in (layer.keep_negative, layer.bits,
                                                          layer.integers))  # fmt: skip
    if len(k) != 1 or len(b) != 1 or len(i) != 1:
        msg = f"layer '{layer.name}': a format per element; the firmware takes one per layer"
        raise TriggerError(msg)
    rounding, saturation = config["RND"], config["SAT"]
    if rounding not in ROUNDING_MODES or saturation not in SATURATION_MODES:
        msg = f"layer '{layer.name}': modes {config['RND']}/{config['SAT']} are not supported"
        raise TriggerError(msg)
    if int(b[0]) == 0:
        msg = f"layer '{layer.name}': quantizes every value to zero bits (a dead layer)"
        raise TriggerError(msg)
    return Fixed(int(b[0]), int(i[0]), bool(k[0]), rounding, saturation)


def port_format(model: Any) -> Fixed:
    """The input port: the first quantizer's format (the `Signature` of the recipe's
    `quantization.input`), rounding half to even and saturating as the input stage does."""
    layers = list(model.layers)
    if len(layers) < 2 or type(layers[1]).__name__ != QUANTIZER:
        msg = "the layer after the input must be a FixedPointQuantizer: the firmware's input port"
        raise TriggerError(msg)
    return quantizer_format(layers[1]).quantizing()


def weight_format(values: np.ndarray) -> Fixed:
    """The narrowest format holding every value exactly (values on dyadic grids)."""
    values = np.asarray(values, np.float64)
    fractional = 0
    while not np.array_equal(np.rint(values * 2.0**fractional), values * 2.0**fractional):
        fractional += 1
        if fractional > 64:
            msg = "internal: an HGQ weight is not on a dyadic grid"
            raise TriggerError(msg)
    lo = Fraction(float(min(values.min(), 0.0)))
    hi = Fraction(float(max(values.max(), 0.0)))
    return smallest_holding(lo, hi, fractional)


def _chain(model: Any) -> tuple[list[tuple[Any, Fixed | None]], dict[str, str]]:
    """(layer, format of the quantizer right after it or None), quantizers folded away; and
    each Add's other operand: the name of the chain layer whose output it adds."""
    from trigger.hls.convert import check_broadcast, check_chained

    layers = list(model.layers)
    sources = {}
    for i, layer in enumerate(layers):
        kind = type(layer).__name__
        if kind not in HGQ_LAYERS:
            msg = (
                f"layer '{layer.name}' ({kind}) is not supported in an HGQ student "
                f"(supported: {', '.join(HGQ_LAYERS)})"
            )
            raise TriggerError(msg)
        source = check_chained(layers, i)
        if source is not None:
            sources[layer.name] = source
        if kind in ("Reshape", "UpSampling1D"):
            check_broadcast(layers, i)
        if kind == "Dense" and layer.get_config()["activation"] != "linear":
            msg = f"layer '{layer.name}' (Dense): its activation must be a separate layer"
            raise TriggerError(msg)
    chain: list[tuple[Any, Fixed | None]] = []
    folded = {}  # quantizer -> the layer it folds into
    for layer in layers:
        if type(layer).__name__ != QUANTIZER:
            chain.append((layer, None))
        elif chain and chain[-1][1] is None:
            chain[-1] = (chain[-1][0], quantizer_format(layer))
            folded[layer.name] = chain[-1][0].name
        else:
            msg = f"layer '{layer.name}': two quantizers in a row"
            raise TriggerError(msg)
    return chain, {add: folded.get(source, source) for add, source in sources.items()}


def plan_hgq(model: Any, firmware: FirmwareConfig) -> Any:
    """The plan of an HGQ proxy model: a plain Keras chain for hls4ml and every format."""
    import tensorflow as tf

    from trigger.hls.convert import INPUT_NAME, LayerPlan, Plan

    chain, sources = _chain(model)
    rest, port = chain[1:], port_format(model)
    x_in = tf.keras.Input(shape=model.input_shape[1:], name=INPUT_NAME)
    plans = [LayerPlan(INPUT_NAME, "InputLayer", None, {"result": port})]
    x, fmt, previous = x_in, port, INPUT_NAME
    # Each proxy layer's plan layer and output, for the Adds' earlier operands.
    planned: dict[str, tuple[LayerPlan, Any]] = {chain[0][0].name: (plans[0], x_in)}
    for k, (layer, after) in enumerate(rest):
        kind = type(layer).__name__
        if kind == "Dense":
            fresh = tf.keras.layers.Dense(layer.units, name=layer.name)
            x = fresh(x)
            fresh.set_weights(layer.get_weights())
            lp = LayerPlan(layer.name, "Dense", fresh, per_particle=len(layer.input.shape) == 3)
            kernel, bias = layer.get_weights()
            w, b = weight_format(kernel), weight_format(bias)
            lp.accumulation = dense_accumulation(fmt, kernel, bias, w, b)
            lp.precision |= {"weight": w, "bias": b, "accum": lp.accumulation.accum}
            lp.precision["result"] = after or lp.accumulation.accum
        elif kind == "ReLU":
            fresh = tf.keras.layers.ReLU(name=f"{previous}_act")
            x = fresh(x)
            lp = LayerPlan(fresh.name, "ReLU", fresh, {"result": after or fmt})
        elif kind in ("AveragePooling1D", "MaxPooling1D"):
            x, lp = _global_pool(layer, rest[k + 1 :], x, fmt)
        elif kind == "Flatten" and plans[-1].kind.startswith("Global"):
            planned[layer.name] = (plans[-1], x)
            continue  # the pooling's (1, C) -> (C,): already flat after global pooling
        elif kind in ("Reshape", "UpSampling1D"):  # repeating a context (check_broadcast)
            fresh = type(layer).from_config(layer.get_config())
            x = fresh(x)
            lp = LayerPlan(layer.name, kind, fresh, {"result": fmt})
        elif kind == "Add":
            source, operand = planned[sources[layer.name]]
            fresh = tf.keras.layers.Add(name=layer.name)
            x = fresh([operand, x])
            lp = LayerPlan(layer.name, "Add", fresh, source=source.name)
            lp.accumulation = sum_accumulation(source.result, fmt)
            lp.precision["result"] = after or lp.accumulation.accum
        else:  # Flatten before an MLP
            fresh = tf.keras.layers.Flatten(name=layer.name)
            x = fresh(x)
            lp = LayerPlan(layer.name, "Flatten", fresh, {"result": fmt})
        plans.append(lp)
        planned[layer.name] = (lp, x)
        fmt, previous = lp.result, lp.name
    clone = tf.keras.Model(x_in, x, name=model.name)
    plans[0].layer = clone.layers[0]
    return Plan(clone, firmware, plans, int(x_in.shape[1]) if len(x_in.shape) == 3 else None)


def _global_pool(layer: Any, after: list, x: Any, fmt: Fixed) -> tuple[Any, Any]:
    """HGQ's pooling over every candidate (pool size N, then Flatten) as a global pooling."""
    import tensorflow as tf

    from trigger.hls.convert import LayerPlan

    n = int(layer.input.shape[1])
    if layer.pool_size[0] != n or not after or type(after[0][0]).__name__ != "Flatten":
        msg = f"layer '{layer.name}': only pooling over all {n} candidates, then Flatten"
        raise TriggerError(msg)
    name = after[0][0].name
    if type(layer).__name__ == "AveragePooling1D":
        fresh = tf.keras.layers.GlobalAveragePooling1D(name=name)
        accum, result = mean_pool_formats(fmt, n)
        lp = LayerPlan(name, "GlobalAveragePooling1D", fresh, {"accum": accum, "result": result})
    else:
        fresh = tf.keras.layers.GlobalMaxPooling1D(name=name)
        lp = LayerPlan(name, "GlobalMaxPooling1D", fresh, {"accum": fmt, "result": fmt})
    return fresh(x), lp
