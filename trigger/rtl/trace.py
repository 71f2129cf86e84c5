"""QKeras student -> da4ml fixed-point trace, layer by layer, with the hls4ml stage's formats.

The plan of `trigger.hls.convert.plan_student` (quantized weights, every quantizer's exact
format, pooling) is the single source of truth; this module only re-expresses it with da4ml's
symbolic fixed-point arrays, whose arithmetic is exact by construction (every sum gets the
width its operands' ranges need). Rounding is where care is needed:

- QKeras rounds half to even (`tf.round`) and then clips. da4ml offers truncation and
  round-half-up only, so `_round_half_even_one` builds it from truncation: add half an output LSB
  minus one input LSB, plus the bit that will become the output LSB, then truncate. On a tie the
  carry then happens exactly when the truncated value would be odd.
- Saturation (clip after rounding) is da4ml's `SAT` on the already rounded value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trigger.config import FirmwareConfig
from trigger.errors import TriggerError
from trigger.hls.precision import Fixed, on_grid, to_codes
from trigger.inputs import (
    ANGLE_PI,
    ATAN_STEP,
    HALF_TURN,
    MOMENT_ANGLE_MAX,
    MOMENT_ANGLE_SHIFT,
    MOMENT_PT_MAX,
    MOMENT_PT_SHIFT,
    ROTATION_GUARD,
    ROTATION_STEPS,
    VECTORING_GUARD,
    InputStage,
    port_words,
)

POOLING = {"GlobalAveragePooling1D": "mean", "GlobalMaxPooling1D": "max"}


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

    code = float(to_codes(np.array([float(v.low) * 2**fmt.fractional]), fmt)[0])
    return FixedVariable.from_const(code * 2.0**-fmt.fractional, hwconf=v.hwconf, _factor=1)


def _quantize_one(v: Any, fmt: Fixed) -> Any:
    """One value onto `fmt` in its modes: QKeras's half to even (`_round_half_even_one`), or
    ap_fixed's truncation (TRN) or half up (RND), then saturation or wrap-around."""
    if v.low == v.high:
        return _const(v, fmt)
    if fmt.rounding == "RND_CONV":
        return _round_half_even_one(v, fmt)
    k, i, f = kif(fmt)
    if fmt.rounding == "RND":
        v = v + 2.0 ** (-f - 1)
    if fmt.saturation == "SAT":
        return _saturate_and_truncate(v, k, i, f)
    return v.quantize(k, i, f, "WRAP", "TRN")


def quantize(x: Any, fmt: Fixed) -> Any:
    """A traced array onto `fmt`, in its rounding and overflow modes."""
    from da4ml.trace import FixedVariableArray

    flat = [_quantize_one(v, fmt) for v in np.ravel(x._vars)]
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


def _dense(x: Any, weights: Sequence[np.ndarray]) -> Any:
    kernel, *rest = (np.asarray(w, np.float64) for w in weights)
    y = _matmul(x, kernel)
    return y + rest[0] if rest else y


def _pool(x: Any, kind: str) -> Any:
    if kind == "mean":
        n = x.shape[0]
        return np.sum(x, axis=0) * 2.0 ** -(n.bit_length() - 1)  # n a power of two: a shift
    return np.max(x, axis=0)


def _add(x: Any, saved: Any) -> Any:
    """saved + x, exact; a jet's context x (one value per feature) goes onto every candidate."""
    from da4ml.trace import FixedVariableArray

    if x.ndim < saved.ndim:
        x = FixedVariableArray(np.broadcast_to(x._vars, saved.shape), x.solver_options)
    return saved + x


def _words(stage: InputStage) -> tuple[Any, Any]:
    """The port: one input per L1 word (3 N + 4), each at its own word's width."""
    from da4ml.trace import FixedVariableArray, FixedVariableArrayInput

    inp = FixedVariableArrayInput((3 * stage.n_constituents + 4,))
    formats = [word for _, word in port_words(stage.n_constituents)]
    words = np.empty(len(formats), dtype=object)
    for j, (v, word) in enumerate(zip(inp._vars, formats, strict=True)):
        words[j] = v.quantize(int(word.signed), word.bits - int(word.signed), 0)
    return inp, FixedVariableArray(words, inp.solver_options)


def _floor_shift(v: Any, i: int) -> Any:
    """v >> i for an integer v: an arithmetic shift, rounding toward minus infinity."""
    k, integer, _ = v.kif
    return (v * 2.0**-i).quantize(k, integer, 0, "WRAP", "TRN")


def _select(sel: Any, if_negative: Any, if_nonnegative: Any) -> Any:
    """`if_negative` where the integer `sel` < 0, else `if_nonnegative`.

    da4ml 0.5.2's `msb_mux` tests the stored bits: on a variable it keeps negated (a negative
    scale factor) zero would count as negative, so there the test is on -sel - 1 instead.
    """
    if sel._factor < 0:  # -sel - 1 < 0 exactly where sel >= 0
        return (-sel - 1).msb_mux(if_nonnegative, if_negative)
    return sel.msb_mux(if_negative, if_nonnegative)


def _cordic_step(turn: Any, x: Any, y: Any, i: int) -> tuple[Any, Any]:
    """One CORDIC step on integers: turn (x, y) by -atan(2^-i) where `turn` >= 0, by
    +atan(2^-i) where it is negative."""
    dx, dy = _floor_shift(y, i), _floor_shift(x, i)
    return _select(turn, x - dx, x + dx), _select(turn, y + dy, y - dy)


def _axis_angle(pt: list, deta: list, dphi: list) -> Any:
    """`trigger.inputs.axis_angle(*axis_moments(...))`: the jet's axis angle theta."""
    a = b = 0
    for p, e, f in zip(pt, deta, dphi, strict=True):
        w = (p * 2.0**-MOMENT_PT_SHIFT).quantize(0, MOMENT_PT_MAX.bit_length(), 0, "SAT", "TRN")
        e, f = (
            (d * 2.0**-MOMENT_ANGLE_SHIFT).quantize(1, MOMENT_ANGLE_MAX.bit_length(), 0, "SAT")
            for d in (e, f)
        )
        we, wf = w * e, w * f
        a = a + (we * e - wf * f)
        b = b + 2 * (we * f)
    a, b = a * 2**VECTORING_GUARD, b * 2**VECTORING_GUARD
    x = _select(a, _select(b, -b, b), a)
    y = _select(a, _select(b, a, -a), b)
    z = _select(a, _select(b, -ANGLE_PI // 2, ANGLE_PI // 2), 0)
    for i, step in enumerate(ATAN_STEP):
        z = _select(y, z - step, z + step)
        x, y = _cordic_step(y, x, y, i)
    return _floor_shift(z, 1)


def _principal_axis_frame(pt: list, deta: list, dphi: list) -> tuple[list, list]:
    """`trigger.inputs.principal_axis_frame`: every candidate's (etarot, phirot)."""
    theta = _axis_angle(pt, deta, dphi)
    turns = []
    for step in ATAN_STEP[:ROTATION_STEPS]:
        turns.append(theta)
        theta = _select(theta, theta + step, theta - step)
    rotated = []
    for e, f in zip(deta, dphi, strict=True):
        x, y = e * 2**ROTATION_GUARD, f * 2**ROTATION_GUARD
        for i, turn in enumerate(turns):
            x, y = _cordic_step(turn, x, y, i)
        rotated.append((x, y))
    return [x for x, _ in rotated], [y for _, y in rotated]


def trace_input_stage(words: Any, stage: InputStage, port: Fixed) -> Any:
    """`trigger.inputs.InputStage.apply` as da4ml logic: (3 N + 4) words -> (N, F) features.

    phi's wrap-around and the padding mask are multiplexers on a sign bit; deltaR^2 is two
    variable products; the principal-axis frame per jet five small products per candidate and
    a CORDIC, per candidate a CORDIC rotation (adders and multiplexers on sign bits); the
    normalisation a constant subtraction and a shift; the rounding and saturation to the
    port's format that of QKeras (`_round_half_even_one`).
    """
    from da4ml.trace import FixedVariableArray

    n, w = stage.n_constituents, words._vars
    jet_eta, jet_phi, count = w[3 * n + 1], w[3 * n + 2], w[3 * n + 3]
    pt = [w[3 * i] for i in range(n)]
    deta = [w[3 * i + 1] - jet_eta for i in range(n)]
    dphi = [w[3 * i + 2] - jet_phi for i in range(n)]
    dphi = [(d - HALF_TURN).msb_mux(d, d - 2 * HALF_TURN) for d in dphi]
    dphi = [(d + HALF_TURN).msb_mux(d + 2 * HALF_TURN, d) for d in dphi]
    etarot = phirot = [None] * n
    if {"etarot", "phirot"} & set(stage.features):
        etarot, phirot = _principal_axis_frame(pt, deta, dphi)
    out = np.empty((n, len(stage.features)), dtype=object)
    for i in range(n):
        raw = {
            "pt": pt[i],
            "deta": deta[i],
            "dphi": dphi[i],
            "count": count,
            "etarot": etarot[i],
            "phirot": phirot[i],
            "present": (pt[i] - 1).msb_mux(0.0, 1.0),  # 1; padding is zeroed below anyway
        }
        for f, name in enumerate(stage.features):
            value = deta[i] * deta[i] + dphi[i] * dphi[i] if name == "dr2" else raw[name]
            scaled = (value - stage.center[f]) * 2.0 ** -stage.shift[f]
            feature = _round_half_even_one(scaled, port)
            out[i, f] = (pt[i] - 1).msb_mux(0.0, feature)  # pT word 0: a padding candidate
    return FixedVariableArray(out, words.solver_options)


def trace_student(model: Any, stage: InputStage, firmware: FirmwareConfig | None = None) -> Trace:
    """The whole tagger as da4ml combinational logic: L1 words in, output codes out, exactly."""
    from da4ml.trace import comb_trace

    from trigger.hls.convert import plan_student

    plan = plan_student(model, firmware or FirmwareConfig())
    inp, words = _words(stage)
    in_fmt = plan.layers[0].result
    x = trace_input_stage(words, stage, in_fmt)
    operations = plan.arithmetic()
    saved = {}
    for op in operations:
        if op.kind == "save":
            saved[op.name] = x
        elif op.kind == "add":
            x = _add(x, saved[op.source])
        elif op.kind == "dense":
            x = _dense(x, op.weights)
        elif op.kind == "round":
            x = quantize(x, op.fmt)
        elif op.kind == "relu":
            x = x.relu()
        elif op.kind in ("mean", "max"):
            x = _pool(x, op.kind)
        else:  # flatten
            x = x.reshape(-1)
    names = [op.name for op in operations]
    comb = comb_trace(inp, x)
    return Trace(comb, in_fmt, plan.layers[-1].result, inp.shape, int(x.size), names)


def trace_input_stage_alone(stage: InputStage, port: Fixed) -> Trace:
    """The input stage by itself (words in, features out): its own share of the cost."""
    from da4ml.trace import comb_trace

    inp, words = _words(stage)
    x = trace_input_stage(words, stage, port)
    comb = comb_trace(inp, x)
    return Trace(comb, port, port, inp.shape, int(x.size), ["input_stage"])


def trace_float_reference(model: Any, stage: InputStage, fmt: Fixed) -> Trace:
    """The float model at one fixed-point format, as da4ml combinational logic.

    The hls4ml float-reference project uses one wide type everywhere; this is the same network
    in da4ml with that type, behind the same input stage: weights, biases and the input stage's
    features rounded half to even onto `fmt`'s grid, every sum exact, and every layer output
    (dense, pooling) rounded half to even and saturated to `fmt`. ReLU keeps values on the grid.
    There are no quantizers to follow, so this is a definition of the float reference in fixed
    point, not a bit-exact twin of Keras. A context block's Add rounds its sum likewise.
    """
    from da4ml.trace import comb_trace

    inp, words = _words(stage)
    rounded = fmt.quantizing()  # half to even, saturating
    x = trace_input_stage(words, stage, rounded)
    names = []
    outputs = {id(model.layers[0].output): x}  # for an Add's earlier operand
    for layer in model.layers[1:]:
        kind = type(layer).__name__
        if kind == "Add":  # a context block: the rounded operands' exact sum, rounded
            context, saved = sorted((outputs[id(t)] for t in layer.input), key=lambda v: v.ndim)
            x = quantize(_add(context, saved), rounded)
        elif kind in ("Reshape", "UpSampling1D"):
            pass  # the Add repeats the context onto the candidates (`_add`)
        elif kind == "Dense":
            x = quantize(_dense(x, [on_grid(w, fmt) for w in layer.get_weights()]), rounded)
        elif kind == "Activation" and layer.get_config()["activation"] in ("relu", "linear"):
            x = x.relu() if layer.get_config()["activation"] == "relu" else x
        elif kind in POOLING:
            x = quantize(_pool(x, POOLING[kind]), rounded)
        elif kind == "Flatten":
            x = x.reshape(-1)
        else:
            msg = f"float reference RTL: layer '{layer.name}' ({kind}) has no RTL rule"
            raise TriggerError(msg)
        outputs[id(layer.output)] = x
        names.append(layer.name)
    comb = comb_trace(inp, x)
    return Trace(comb, fmt, fmt, inp.shape, int(x.size), names)
