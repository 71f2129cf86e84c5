"""QKeras student -> da4ml fixed-point trace, layer by layer, with the hls4ml stage's formats.

The plan of `trigger.hls.convert.plan_student` (quantized weights, every quantizer's exact
format, pooling) is the single source of truth; this module only re-expresses it with da4ml's
symbolic fixed-point arrays, whose arithmetic is exact by construction (every sum gets the
width its operands' ranges need). Rounding is where care is needed:

- QKeras rounds half to even (`tf.round`) and then clips. da4ml offers truncation and
  round-half-up only, so `round_half_even` builds it from truncation: add half an output LSB
  minus one input LSB, plus the bit that will become the output LSB, then truncate. On a tie the
  carry then happens exactly when the truncated value would be odd.
- Saturation (clip after rounding) is da4ml's `SAT` on the already rounded value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from trigger.config import FirmwareConfig
from trigger.errors import TriggerError
from trigger.hls.precision import Fixed

POOLING = ("GlobalAveragePooling1D", "GlobalMaxPooling1D")


@dataclass
class Trace:
    """A traced student: da4ml combinational logic plus the formats of its ports."""

    comb: Any  # da4ml CombLogic
    input_format: Fixed
    output_format: Fixed
    input_shape: tuple[int, ...]
    n_outputs: int
    layers: list[str]


def kif(fmt: Fixed) -> tuple[int, int, int]:
    """da4ml's (keep_negative, integer bits without sign, fractional bits) of a format."""
    k = int(fmt.signed)
    return k, fmt.integer - k, fmt.fractional


# da4ml 0.5.2's SAT is exact while the power-of-two scale factor da4ml carries on a value is
# within 2^+-31 of its constants' (1); beyond, its op encoding overflows (see below).
_SAFE_FACTOR_BITS = 31


def _saturate_and_truncate(v: Any, k: int, i: int, f: int) -> Any:
    """`v.quantize(k, i, f, "SAT", "TRN")`, clipping with two ReLUs where da4ml's SAT breaks.

    Every layer multiplies the scale factor of the traced values by the weights' step; after a
    rho of two layers it can drift more than 32 bits from the factor of da4ml's saturation
    constants, and da4ml's SAT then gives wrong values (an RTL mismatch on most jets). There,
    relu(v - low) - relu(v - high) + low clips the same values and keeps v's factor. It costs
    an adder more than SAT, so it is used only where needed. The clip bounds lie on the output
    grid, so clipping before truncating gives the same result.
    """
    if abs(math.log2(abs(float(v._factor)))) <= _SAFE_FACTOR_BITS:
        return v.quantize(k, i, f, "SAT", "TRN")
    step = 2.0**-f
    high = 2.0**i - step
    low = -(2.0**i) if k else 0.0
    if float(v.low) < low or float(v.high) > high:
        v = (v - low).relu() - (v - high).relu() + low
    return v.quantize(k, i, f, "WRAP", "TRN")


def _round_half_even_one(v: Any, fmt: Fixed) -> Any:
    k, i, f = kif(fmt)
    if v.low == v.high:  # a constant (e.g. a pruned-away output): round it in Python
        return _const(v, fmt)
    _, _, f_in = v.kif
    if f_in <= f:  # already on the grid: only clipping is left
        return _saturate_and_truncate(v, k, i, f)
    # b = the bit of weight 2^-f (the LSB the result keeps), as a value b * 2^-f.
    lsb_bit = v.quantize(0, 1 - f, f, "WRAP", "TRN")
    # Carry into 2^-f iff remainder > half, or == half and the kept LSB is odd.
    biased = v + (2.0 ** (-f - 1) - 2.0**-f_in) + lsb_bit * 2.0 ** (f - f_in)
    return _saturate_and_truncate(biased, k, i, f)


def _const(v: Any, fmt: Fixed) -> Any:
    from da4ml.trace import FixedVariable

    value = float(v.low) * 2**fmt.fractional
    code = float(np.clip(np.round(value), float(fmt.min / fmt.lsb), float(fmt.max / fmt.lsb)))
    return FixedVariable.from_const(code * 2.0**-fmt.fractional, hwconf=v.hwconf, _factor=1)


def round_half_even(x: Any, fmt: Fixed) -> Any:
    """QKeras quantization of a traced array: round half to even to `fmt`, then saturate."""
    from da4ml.trace import FixedVariableArray

    flat = [_round_half_even_one(v, fmt) for v in np.ravel(x._vars)]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return FixedVariableArray(out.reshape(x.shape), x.solver_options)


def _matmul(x: Any, kernel: np.ndarray) -> Any:
    """`x @ kernel` for a 1D or 2D traced x, solving each distinct row once.

    Per-particle layers apply one kernel to N rows with identical ranges and arrival times;
    da4ml would solve the same constant-matrix problem N times. The adder graph is solved once
    per distinct row signature and instantiated for every row (the hardware is the same).
    """
    from da4ml.cmvm.api import solve
    from da4ml.cmvm.types import QInterval
    from da4ml.trace import FixedVariableArray

    rows = x._vars.reshape(-1, kernel.shape[0])
    matrix = np.ascontiguousarray(kernel.astype(np.float32))
    if not np.array_equal(matrix.astype(np.float64), kernel):
        msg = "internal: a weight does not survive float32 (da4ml's kernel type)"
        raise TriggerError(msg)
    options = {"search_all_decompose_dc": False}
    solved: dict[tuple, Any] = {}
    out = []
    for row in rows:
        qint = [QInterval(float(v.low), float(v.high), float(v.step)) for v in row]
        lat = [float(v.latency) for v in row]
        key = (tuple(qint), tuple(lat))
        if key not in solved:
            solved[key] = solve(matrix, qintervals=qint, latencies=lat, **options)
        out.append(solved[key](row))
    shape = (*x.shape[:-1], kernel.shape[1])
    return FixedVariableArray(np.array(out, dtype=object).reshape(shape), x.solver_options)


def _dense(x: Any, weights: list[np.ndarray]) -> Any:
    kernel, *rest = (np.asarray(w, np.float64) for w in weights)
    y = _matmul(x, kernel)
    return y + rest[0] if rest else y


def _pool(x: Any, kind: str) -> Any:
    if kind == "GlobalAveragePooling1D":
        n = x.shape[0]
        return np.sum(x, axis=0) * 2.0 ** -(n.bit_length() - 1)  # n a power of two: a shift
    return np.max(x, axis=0)


def on_grid(values: np.ndarray, fmt: Fixed) -> np.ndarray:
    """Values rounded half to even onto `fmt`'s grid and saturated to its range."""
    lsb = float(fmt.lsb)
    low, high = float(fmt.min / fmt.lsb), float(fmt.max / fmt.lsb)
    return np.clip(np.round(np.asarray(values, np.float64) / lsb), low, high) * lsb


def trace_student(model: Any, firmware: FirmwareConfig | None = None) -> Trace:
    """The student as da4ml combinational logic: input codes in, output codes out, exactly."""
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    from trigger.hls.convert import plan_student

    plan = plan_student(model, firmware or FirmwareConfig())
    first = plan.layers[0]
    input_shape = tuple(int(d) for d in first.layer.output.shape[1:])
    inp = FixedVariableArrayInput(input_shape)
    in_fmt = first.result
    x = inp.quantize(*kif(in_fmt))  # the port: values arrive already on the input grid
    names = []
    for lp in plan.layers[1:]:
        if lp.kind == "QDense":
            x = _dense(x, lp.layer.get_weights())
        elif lp.kind == "QActivation":
            x = round_half_even(x, lp.result)
        elif lp.kind in POOLING:
            x = _pool(x, lp.kind)
        elif lp.kind == "Flatten":
            x = x.reshape(-1)
        else:  # check_contract already refused anything else
            msg = f"internal: no RTL rule for layer '{lp.name}' ({lp.kind})"
            raise TriggerError(msg)
        names.append(lp.name)
    comb = comb_trace(inp, x)
    return Trace(comb, in_fmt, plan.layers[-1].result, input_shape, int(x.size), names)


def trace_float_reference(model: Any, fmt: Fixed) -> Trace:
    """The float model at one fixed-point format, as da4ml combinational logic.

    The hls4ml float-reference project uses one wide type everywhere; this is the same network
    in da4ml with that type: weights, biases and the input rounded half to even onto `fmt`'s
    grid, every sum exact, and every layer output (dense, pooling) rounded half to even and
    saturated to `fmt`. ReLU keeps values on the grid. There are no quantizers to follow, so
    this is a definition of the float reference in fixed point, not a bit-exact twin of Keras.
    """
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    input_shape = tuple(int(d) for d in model.input_shape[1:])
    inp = FixedVariableArrayInput(input_shape)
    x = inp.quantize(*kif(fmt))
    names = []
    for layer in model.layers[1:]:
        kind = type(layer).__name__
        if kind == "Dense":
            x = round_half_even(_dense(x, [on_grid(w, fmt) for w in layer.get_weights()]), fmt)
        elif kind == "Activation" and layer.get_config()["activation"] in ("relu", "linear"):
            x = x.relu() if layer.get_config()["activation"] == "relu" else x
        elif kind in POOLING:
            x = round_half_even(_pool(x, kind), fmt)
        elif kind == "Flatten":
            x = x.reshape(-1)
        else:
            msg = f"float reference RTL: layer '{layer.name}' ({kind}) has no RTL rule"
            raise TriggerError(msg)
        names.append(layer.name)
    comb = comb_trace(inp, x)
    return Trace(comb, fmt, fmt, input_shape, int(x.size), names)
