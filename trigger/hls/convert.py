"""QKeras student -> hls4ml model, every precision derived from the QKeras quantizers.

The conversion is a plan of per-layer formats built by small named steps applied in order
(`STEPS`), in the spirit of hls4ml's optimizer passes. Each step reads what earlier steps
decided and adds its own decisions; `Plan.hls_config()` turns the result into the explicit
per-layer hls4ml configuration, and `verify_precisions` checks hls4ml kept every one of them.

hls4ml 1.3 pitfalls handled here (see STACK.md):
- a QDense on (N, F) input becomes a pointwise Conv1D that drops the weight/bias quantizers:
  `quantize_weights` writes the quantized values into the kernel before conversion and
  `dense_formats` sets the weight/bias types explicitly, so nothing is left to a cast;
- global average pooling has no precision inference: `pooling_formats` sets accum/result;
- per-particle layers process one particle per clock unless `ParallelizationFactor` = N;
- the input quantizer defines the firmware input type (round half to even, saturate).

The student is one chain of layers, each taking the previous one's output, except for an
`Add`, which also takes the output of an earlier layer of the chain (a context block,
`trigger.taggers`): the plan keeps that value (`Operation` "save") until the Add adds it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trigger.config import FirmwareConfig
from trigger.errors import TriggerError
from trigger.hls.convert_hgq import is_hgq, plan_hgq, port_format
from trigger.hls.precision import (
    FLOAT32_SIGNIFICANT_BITS,
    Accumulation,
    Fixed,
    dense_accumulation,
    mean_pool_formats,
    quantizer_format,
    sum_accumulation,
)

PROJECT_NAME = "tagger"
# hls4ml reserves the layer name "input" (the contract's name); the firmware port is "jets".
INPUT_NAME = "jets"
SUPPORTED_LAYERS = (
    "InputLayer",
    "QActivation",
    "QDense",
    "GlobalAveragePooling1D",
    "GlobalMaxPooling1D",
    "Flatten",
    "Reshape",
    "UpSampling1D",
    "Add",
)
DENSE_KINDS = ("QDense", "Dense")  # plain Dense: an HGQ student's (convert_hgq)
_FLOAT_ONLY = {"Dense", "Activation", "ReLU", "Conv1D", "BatchNormalization"}
# The float reference is converted as-is with one wide type everywhere.
FLOAT_REFERENCE_FORMAT = Fixed(32, 16)
FLOAT_REFERENCE_PRECISION = FLOAT_REFERENCE_FORMAT.hls()


@dataclass
class LayerPlan:
    """What the firmware does for one Keras layer."""

    name: str
    kind: str
    layer: Any
    precision: dict[str, Fixed] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    accumulation: Accumulation | None = None
    per_particle: bool = False
    source: str | None = None  # an Add's other operand: the earlier layer whose output it adds

    @property
    def result(self) -> Fixed:
        return self.precision["result"]


@dataclass(frozen=True)
class Operation:
    """One step of the firmware's arithmetic after its input port, for any evaluator to run:
    "dense" (x @ kernel + bias, exact: every sum fits its accumulator), "round" (onto `fmt`
    by its rounding mode, then saturate or wrap as it says), "relu", "mean" / "max" pooling
    over candidates (the mean an exact shift), "flatten", "save" (keep x as the value `name`;
    x goes on unchanged) and "add" (the saved value `source` + x, exact; an x without the
    candidate axis, a jet's context, is added to every candidate)."""

    kind: str
    name: str
    weights: tuple[np.ndarray, ...] = ()
    fmt: Fixed | None = None
    source: str | None = None


_OPERATION = {
    "QDense": "dense",
    "Dense": "dense",
    "ReLU": "relu",
    "QActivation": "round",
    "GlobalAveragePooling1D": "mean",
    "GlobalMaxPooling1D": "max",
    "Flatten": "flatten",
    "Add": "add",
}
# Layers that move no value: the Reshape and UpSampling1D that repeat a jet's context onto its
# candidates (`check_broadcast`); the "add" that follows broadcasts instead.
_WIRING = ("Reshape", "UpSampling1D")


@dataclass
class Plan:
    model: Any  # a private clone of the student; steps may rewrite its weights
    firmware: FirmwareConfig
    layers: list[LayerPlan]
    n_particles: int | None
    applied: list[str] = field(default_factory=list)

    def hls_config(self) -> dict[str, Any]:
        names: dict[str, Any] = {}
        for lp in self.layers:
            entry: dict[str, Any] = {"Precision": {k: v.hls() for k, v in lp.precision.items()}}
            entry.update(lp.options)
            names[lp.name] = entry
            if lp.kind in DENSE_KINDS:
                # hls4ml appends a linear activation node to every dense layer; with the
                # dense result's own type it is a no-op cast and hls4ml removes it.
                names[f"{lp.name}_linear"] = {"Precision": {"result": lp.result.hls()}}
        return {
            "Model": {
                # Every layer below has explicit types; the default would only show up in a
                # layer hls4ml inserts on its own, which verify_precisions would reject.
                "Precision": {"default": "ap_fixed<16,6>"},
                "ReuseFactor": self.firmware.reuse_factor,
                "Strategy": self.firmware.strategy,
                "BitExact": False,
            },
            "LayerName": names,
        }

    def arithmetic(self) -> list[Operation]:
        """The network as operations on exact values, quantized weights included."""
        operations = []
        saved = {lp.source for lp in self.layers if lp.source}
        for lp in self.layers[1:]:
            if lp.kind in _WIRING:
                continue
            kind = _OPERATION[lp.kind]
            weights = lp.layer.get_weights() if kind == "dense" else []
            operations.append(
                Operation(
                    kind,
                    lp.name,
                    tuple(np.asarray(w, np.float64) for w in weights),
                    lp.result if kind == "round" else None,
                    lp.source,
                )
            )
            # An HGQ layer's result type is the quantizer that followed it (convert_hgq).
            exact_sum = lp.accumulation is not None and lp.result == lp.accumulation.accum
            if lp.kind in ("Dense", "ReLU", "Add") and not exact_sum:
                operations.append(Operation("round", lp.name, (), lp.result))
            if lp.name in saved:
                operations.append(Operation("save", lp.name))
        return operations

    def summary(self) -> dict[str, Any]:
        layers = {}
        for lp in self.layers:
            entry: dict[str, Any] = {"class": lp.kind}
            entry.update({k: v.hls() for k, v in lp.precision.items()})
            if lp.accumulation is not None:
                entry["accumulator_significant_bits"] = lp.accumulation.significant_bits
            if lp.options:
                entry["options"] = dict(lp.options)
            layers[lp.name] = entry
        return {
            "steps": list(self.applied),
            "n_particles": self.n_particles,
            "input": self.layers[0].result.hls(),
            "output": self.layers[-1].result.hls(),
            "max_accumulator_significant_bits": max(self.sum_bits(), default=0),
            "keras_float32_exact": self.keras_float32_exact(),
            "layers": layers,
        }

    def sum_bits(self) -> list[int]:
        """Significant bits of every sum the model computes: each dense layer's and each Add's
        (their `accumulation`), and each mean pooling's (N values of the input format: log2(N)
        more bits than one)."""
        bits = [lp.accumulation.significant_bits for lp in self.layers if lp.accumulation]
        for previous, lp in itertools.pairwise(self.layers):
            if lp.kind == "GlobalAveragePooling1D":
                bits.append(previous.result.width + int(lp.layer.input.shape[1]).bit_length() - 1)
        return bits

    def layer(self, name: str) -> LayerPlan:
        return next(lp for lp in self.layers if lp.name == name)

    def keras_float32_exact(self) -> bool:
        """Whether Keras, summing in float32, computes this model exactly."""
        return max(self.sum_bits(), default=0) <= FLOAT32_SIGNIFICANT_BITS


Step = Callable[[Plan], None]


# --- contract -------------------------------------------------------------------------------


def _quantizer_name(layer: Any) -> str:
    return type(getattr(layer, "quantizer", None)).__name__


def check_chained(layers: list[Any], i: int) -> str | None:
    """Layer i must take the output of layer i - 1: emit-hls converts one chain of layers. An
    Add also takes the output of an earlier layer, whose name it returns (its `source`)."""
    if i == 0:
        return None
    layer, previous = layers[i], layers[i - 1]
    if type(layer).__name__ != "Add":
        if layer.input is not previous.output:
            msg = f"layer '{layer.name}': emit-hls supports a single chain of layers"
            raise TriggerError(msg)
        return None
    inputs = list(layer.input)
    # Not the input layer: the firmware has only the input quantizer's output.
    earlier = {id(other.output): other for other in layers[1 : i - 1]}
    others = [t for t in inputs if t is not previous.output]
    if len(inputs) != 2 or len(others) != 1 or id(others[0]) not in earlier:
        msg = (
            f"layer '{layer.name}' (Add): emit-hls adds the previous layer's output to that "
            "of one earlier layer of the chain, after the input quantizer"
        )
        raise TriggerError(msg)
    source = earlier[id(others[0])]
    if tuple(source.output.shape) != tuple(layer.output.shape):
        msg = f"layer '{layer.name}' (Add): its operands must have the same shape"
        raise TriggerError(msg)
    return source.name


def check_broadcast(layers: list[Any], i: int) -> None:
    """A Reshape or UpSampling1D is supported where it repeats a jet's context onto every
    candidate for an Add: Reshape (w,) -> (1, w), then UpSampling1D -> (N, w), then the Add."""
    layer = layers[i]
    kind = type(layer).__name__
    following = [type(other).__name__ for other in layers[i + 1 : i + 3]]
    if kind == "Reshape":
        width = int(layer.input.shape[-1])
        ok = len(layer.input.shape) == 2 and tuple(layer.output.shape[1:]) == (1, width)
        ok = ok and following == ["UpSampling1D", "Add"]
    else:
        ok = type(layers[i - 1]).__name__ == "Reshape" and following[:1] == ["Add"]
    if not ok:
        msg = (
            f"layer '{layer.name}' ({kind}): emit-hls supports Reshape and UpSampling1D only as "
            "Reshape((1, w)) -> UpSampling1D(N) -> Add, repeating a jet's context onto its "
            "candidates"
        )
        raise TriggerError(msg)


def check_contract(model: Any) -> list[LayerPlan]:
    """The student must be one chain of supported QKeras layers; name the first that is not."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        msg = "emit-hls supports models with one input and one output"
        raise TriggerError(msg)
    layers = list(model.layers)
    plans = []
    for i, layer in enumerate(layers):
        kind = type(layer).__name__
        if kind not in SUPPORTED_LAYERS:
            if kind in _FLOAT_ONLY:
                msg = (
                    f"layer '{layer.name}' ({kind}) is not quantized: emit-hls needs a QKeras "
                    "student (QDense, QActivation)"
                )
            else:
                msg = (
                    f"layer '{layer.name}' ({kind}) is not supported by emit-hls "
                    f"(supported: {', '.join(SUPPORTED_LAYERS)})"
                )
            raise TriggerError(msg)
        source = check_chained(layers, i)
        if kind in _WIRING:
            check_broadcast(layers, i)
        plans.append(LayerPlan(layer.name, kind, layer, source=source))
    if (
        len(plans) < 2
        or plans[1].kind != "QActivation"
        or _quantizer_name(plans[1].layer) != ("quantized_bits")
    ):
        msg = (
            "the layer after the input must be a QActivation(quantized_bits): it defines the "
            "firmware's input precision"
        )
        raise TriggerError(msg)
    return plans


def input_port(model: Any) -> Fixed:
    """The input port's format: that of the model's input quantizer (contract layer 1)."""
    if is_hgq(model):
        return port_format(model)
    layer = check_contract(model)[1]
    return quantizer_format(layer.layer.quantizer, layer.name)


# --- steps ----------------------------------------------------------------------------------


def quantize_weights(plan: Plan) -> None:
    """Write each QDense's quantized kernel and bias into the (cloned) Keras weights.

    QKeras quantizers are idempotent, so the Keras outputs do not change; hls4ml then sees
    values that are exactly on the weight grid even where it drops the quantizers (QDense on
    3D input -> pointwise Conv1D).
    """
    for lp in plan.layers:
        if lp.kind != "QDense":
            continue
        layer = lp.layer
        if layer.kernel_quantizer_internal is None:
            msg = f"layer '{lp.name}' (QDense) has no kernel_quantizer"
            raise TriggerError(msg)
        if layer.use_bias and layer.bias_quantizer_internal is None:
            msg = f"layer '{lp.name}' (QDense) has a bias but no bias_quantizer"
            raise TriggerError(msg)
        activation = getattr(layer.activation, "__name__", type(layer.activation).__name__)
        if activation != "linear":
            msg = f"layer '{lp.name}' (QDense): put its activation in a separate QActivation"
            raise TriggerError(msg)
        pairs = [(layer.kernel, layer.kernel_quantizer_internal)]
        if layer.use_bias:
            pairs.append((layer.bias, layer.bias_quantizer_internal))
        for _, quantizer in pairs:
            quantizer_format(quantizer, lp.name)  # names any setting with no fixed-point form
        values = [q(w).numpy() for w, q in pairs]
        for v, (_, q) in zip(values, pairs, strict=True):
            if not np.array_equal(q(v).numpy(), v):
                msg = f"layer '{lp.name}': its quantizer is not idempotent"
                raise TriggerError(msg)
        layer.set_weights(values)


def input_format(plan: Plan) -> None:
    """The input port takes the input quantizer's format, rounding half to even and saturating.

    The input QActivation then converts a type to itself and hls4ml removes it; in the C++
    emulator the float -> input_t conversion is the quantizer, bit for bit.
    """
    fmt = quantizer_format(plan.layers[1].layer.quantizer, plan.layers[1].name)
    plan.layers[0].precision["result"] = fmt
    shape = plan.layers[0].layer.output.shape
    plan.n_particles = int(shape[1]) if len(shape) == 3 else None


def _dense(plan: Plan, lp: LayerPlan, x: Fixed) -> None:
    layer = lp.layer
    w = quantizer_format(layer.kernel_quantizer_internal, lp.name)
    b = quantizer_format(layer.bias_quantizer_internal, lp.name) if layer.use_bias else None
    weights = layer.get_weights()
    bias = weights[1] if layer.use_bias else None
    acc = dense_accumulation(x, weights[0], bias, w, b)
    lp.accumulation = acc
    # Values are already on these grids: plain types, no rounding or saturation logic.
    lp.precision["weight"] = Fixed(w.width, w.integer, w.signed)
    if b is not None:  # without a bias hls4ml adds zeros of its own type, which change no sum
        lp.precision["bias"] = Fixed(b.width, b.integer, b.signed)
    lp.precision["accum"] = acc.accum
    # The sum is passed on exactly; the following QActivation rounds it.
    lp.precision["result"] = acc.accum
    lp.per_particle = len(layer.input.shape) == 3


def _activation(plan: Plan, lp: LayerPlan, x: Fixed) -> None:
    lp.precision["result"] = quantizer_format(lp.layer.quantizer, lp.name)


def _pool(plan: Plan, lp: LayerPlan, x: Fixed) -> None:
    if lp.kind == "GlobalAveragePooling1D":
        accum, result = mean_pool_formats(x, int(lp.layer.input.shape[1]))
    else:
        accum, result = x, x
    lp.precision["accum"] = accum
    lp.precision["result"] = result


def _flatten(plan: Plan, lp: LayerPlan, x: Fixed) -> None:
    lp.precision["result"] = x


def _add(plan: Plan, lp: LayerPlan, x: Fixed) -> None:
    # The exact sum: hls4ml adds in ap_fixed and casts to this type without loss.
    lp.accumulation = sum_accumulation(plan.layer(lp.source).result, x)
    lp.precision["result"] = lp.accumulation.accum


_FORMAT_RULES: dict[str, Callable[[Plan, LayerPlan, Fixed], None]] = {
    "QDense": _dense,
    "QActivation": _activation,
    "GlobalAveragePooling1D": _pool,
    "GlobalMaxPooling1D": _pool,
    "Flatten": _flatten,
    "Reshape": _flatten,
    "UpSampling1D": _flatten,
    "Add": _add,
}


def layer_formats(plan: Plan) -> None:
    """Propagate formats down the chain: each layer's rule sees its input's exact format.

    QDense: weight/bias = their quantizers' formats; accum = result = the smallest format
    holding every partial sum exactly. QActivation: its quantizer's format with RND_CONV/SAT.
    Mean pooling: log2(N) extra fractional bits so the division is an exact shift. Add: the
    exact sum of its operands' formats. Flatten, Reshape, UpSampling1D: their input's format.
    """
    x = plan.layers[0].result
    for lp in plan.layers[1:]:
        _FORMAT_RULES[lp.kind](plan, lp, x)
        x = lp.result


def per_particle_parallelism(plan: Plan) -> None:
    """Per-particle QDense layers (pointwise Conv1D in hls4ml) process all N particles at once."""
    if plan.firmware.io_type != "io_parallel" or plan.n_particles is None:
        return
    for lp in plan.layers:
        if lp.per_particle:
            lp.options["ParallelizationFactor"] = plan.n_particles


def firmware_strategy(plan: Plan) -> None:
    """Reuse factor from the recipe on every layer with arithmetic (strategy: model level)."""
    for lp in plan.layers:
        if lp.kind in DENSE_KINDS:
            lp.options["ReuseFactor"] = plan.firmware.reuse_factor


# What the target asks of every layer, whichever quantizers set the formats.
TARGET_STEPS: tuple[Step, ...] = (per_particle_parallelism, firmware_strategy)
# A QKeras student's formats come from its quantizers (an HGQ student's: `convert_hgq`).
STEPS: tuple[Step, ...] = (quantize_weights, input_format, layer_formats, *TARGET_STEPS)


def rebuild_chain(model: Any) -> Any:
    """A copy of a chain model (Adds included) with fresh layers and the input renamed to
    `INPUT_NAME`.

    hls4ml reserves the layer name 'input', which the student contract uses; the copy also
    lets steps rewrite weights without touching the caller's model.
    """
    import tensorflow as tf

    with _keras_noise():
        x_in = tf.keras.Input(shape=model.input_shape[1:], name=INPUT_NAME)
        copies = {id(model.layers[0].output): x_in}  # each original output -> its copy
        for layer in model.layers[1:]:
            fresh = type(layer).from_config(layer.get_config())
            inputs = layer.input
            if isinstance(inputs, list):
                copies[id(layer.output)] = fresh([copies[id(t)] for t in inputs])
            else:
                copies[id(layer.output)] = fresh(copies[id(inputs)])
            fresh.set_weights(layer.get_weights())
        return tf.keras.Model(x_in, copies[id(model.layers[-1].output)], name=model.name)


@contextlib.contextmanager
def _keras_noise():
    """Keras warns when QKeras quantizers pass through its constraint serializer; harmless."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"The `keras\.constraints\.serialize\(\)` API", category=UserWarning
        )
        yield


def plan_student(model: Any, firmware: FirmwareConfig) -> Plan:
    """Check the contract on a clone of `model` and apply every step in order (for an HGQ
    student, `convert_hgq` reads every format off its quantizers instead)."""
    if is_hgq(model):
        return _apply(plan_hgq(model, firmware), TARGET_STEPS)
    check_contract(model)  # before cloning, so errors name the caller's layers
    clone = rebuild_chain(model)
    return _apply(Plan(clone, firmware, check_contract(clone), None), STEPS)


def _apply(plan: Plan, steps: tuple[Step, ...]) -> Plan:
    for step in steps:
        step(plan)
        plan.applied.append(step.__name__)
    return plan


# --- conversion -----------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet(log: Path):
    """hls4ml prints a line per layer; keep it in a log file beside the project."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as f:
            f.write(buffer.getvalue())


def _backend_kwargs(firmware: FirmwareConfig) -> dict[str, Any]:
    return {
        "backend": firmware.backend,
        "part": firmware.part,
        "clock_period": firmware.clock_period,
        "io_type": firmware.io_type,
        # Weights compiled into the headers: the emulator library is self-contained and the
        # project directory can move (emit-hls writes it under a temporary name).
        "write_weights_txt": False,
    }


def _precision_of(layer: Any, key: str) -> Any:
    if key == "result":
        return layer.get_output_variable().type.precision
    if key in ("weight", "bias"):
        w = layer.weights.get(key)
        return None if w is None else w.type.precision
    t = layer.get_attr(f"{key}_t")
    return None if t is None else t.precision


def _as_fixed(precision: Any) -> Fixed | None:
    """hls4ml's FixedPrecisionType as a `Fixed` (None for any other kind of type)."""
    if not hasattr(precision, "fractional") or not hasattr(precision, "rounding_mode"):
        return None
    rounding = str(precision.rounding_mode or "TRN")
    saturation = str(precision.saturation_mode or "WRAP")
    return Fixed(precision.width, precision.integer, precision.signed, rounding, saturation)


def verify_precisions(plan: Plan, hls_model: Any) -> None:
    """Every type the plan set must be the one hls4ml will write; none left to a default."""
    by_name = {layer.name: layer for layer in hls_model.get_layers()}
    for lp in plan.layers:
        layer = by_name.get(lp.name)
        if layer is None:
            continue  # removed by hls4ml (the input quantizer: a cast to its own type)
        for key, fmt in lp.precision.items():
            precision = _precision_of(layer, key)
            if precision is not None and _as_fixed(precision) != fmt:
                msg = (
                    f"internal: hls4ml gave layer '{lp.name}' {key} type {precision}, "
                    f"planned {fmt.hls()}"
                )
                raise TriggerError(msg)
    planned = {lp.name for lp in plan.layers}
    extra = [n for n in by_name if n not in planned]
    if extra:
        msg = f"internal: hls4ml inserted layers the plan does not cover: {', '.join(extra)}"
        raise TriggerError(msg)


def convert_student(
    model: Any, output_dir: str | Path, firmware: FirmwareConfig | None = None
) -> tuple[Any, Plan]:
    """QKeras student -> written hls4ml project (not compiled). Returns (hls_model, plan)."""
    import hls4ml

    firmware = firmware or FirmwareConfig()
    output_dir = Path(output_dir)
    plan = plan_student(model, firmware)
    with _quiet(output_dir / "hls4ml.log"), _keras_noise():
        hls_model = hls4ml.converters.convert_from_keras_model(
            plan.model,
            output_dir=str(output_dir),
            project_name=PROJECT_NAME,
            hls_config=plan.hls_config(),
            bit_exact=False,
            **_backend_kwargs(firmware),
        )
        verify_precisions(plan, hls_model)
        hls_model.write()
    return hls_model, plan


def convert_float_reference(
    model: Any, output_dir: str | Path, firmware: FirmwareConfig | None = None
) -> Any:
    """Float model -> hls4ml project with one wide fixed-point type, for hardware comparisons."""
    import hls4ml

    firmware = firmware or FirmwareConfig()
    output_dir = Path(output_dir)
    names: dict[str, Any] = {}
    for layer in model.layers:
        shape = getattr(layer, "input_shape", None)
        if type(layer).__name__ == "Dense" and shape is not None and len(shape) == 3:
            if firmware.io_type == "io_parallel":
                names[layer.name] = {"ParallelizationFactor": int(shape[1])}
        elif type(layer).__name__ in ("Lambda", "Masking", "EinsumDense"):
            msg = f"float reference: layer '{layer.name}' ({type(layer).__name__}) is not supported"
            raise TriggerError(msg)
    config = {
        "Model": {
            "Precision": {"default": FLOAT_REFERENCE_PRECISION},
            "ReuseFactor": firmware.reuse_factor,
            "Strategy": firmware.strategy,
            "BitExact": False,
        },
        "LayerName": names,
    }
    model = rebuild_chain(model)
    with _quiet(output_dir / "hls4ml.log"), _keras_noise():
        hls_model = hls4ml.converters.convert_from_keras_model(
            model,
            output_dir=str(output_dir),
            project_name=PROJECT_NAME,
            hls_config=config,
            bit_exact=False,
            **_backend_kwargs(firmware),
        )
        hls_model.write()
    return hls_model
