"""Fixed-point formats derived from QKeras quantizers, and the exact ranges they must hold.

Every precision in the firmware comes from here: a quantizer's format is read off its
configuration, an accumulator's format is the smallest one that holds every partial sum of the
layer exactly (from the quantized weights and the input format), never a guessed default.

Rounding: QKeras rounds with `tf.round`, which rounds half to even, and clips after rounding.
The matching ap_fixed modes are `AP_RND_CONV` (round half to even) and `AP_SAT`. `AP_RND` would
round half up and differ on every exact tie.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from trigger.errors import TriggerError

# float32 carries 24 significant bits: sums needing more are rounded by Keras itself.
FLOAT32_SIGNIFICANT_BITS = 24


@dataclass(frozen=True)
class Fixed:
    """An ap_fixed format. `integer` counts the bits left of the point, sign bit included."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"  # TRN (truncate) or RND_CONV (round half to even)
    saturation: str = "WRAP"  # WRAP or SAT

    @property
    def fractional(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> Fraction:
        return Fraction(2) ** -self.fractional

    @property
    def min(self) -> Fraction:
        return -(Fraction(2) ** (self.integer - 1)) if self.signed else Fraction(0)

    @property
    def max(self) -> Fraction:
        top = self.integer - 1 if self.signed else self.integer
        return Fraction(2) ** top - self.lsb

    def hls(self) -> str:
        base = "ap_fixed" if self.signed else "ap_ufixed"
        modes = ""
        if self.rounding != "TRN" or self.saturation != "WRAP":
            modes = f",AP_{self.rounding},AP_{self.saturation}"
        return f"{base}<{self.width},{self.integer}{modes}>"

    def quantizing(self) -> Fixed:
        """The same format rounding half to even and saturating, as a QKeras quantizer does."""
        return Fixed(self.width, self.integer, self.signed, "RND_CONV", "SAT")


def smallest_holding(lo: Fraction, hi: Fraction, fractional: int) -> Fixed:
    """The narrowest format with `fractional` bits holding every value in [lo, hi] exactly."""
    scale = Fraction(2) ** fractional
    lo_i, hi_i = lo * scale, hi * scale
    if lo_i.denominator != 1 or hi_i.denominator != 1:
        msg = f"internal: range [{lo}, {hi}] is not on a 2^-{fractional} grid"
        raise ValueError(msg)
    lo_i, hi_i = int(lo_i), int(hi_i)
    # Keep at least one integer bit (sign included): a negative integer count is legal
    # ap_fixed but not worth the surprise in a report.
    if lo_i < 0:
        # signed: -2^(w-1) <= lo and hi <= 2^(w-1) - 1
        magnitude = max(-lo_i, hi_i + 1)
        width = max(2, (magnitude - 1).bit_length() + 1, fractional + 1)
        return Fixed(width, width - fractional, signed=True)
    width = max(1, hi_i.bit_length(), fractional + 1)
    return Fixed(width, width - fractional, signed=False)


def significant_bits(bound: Fraction, fractional: int) -> int:
    """Bits of magnitude a number up to `bound` on a 2^-fractional grid needs (sign excluded)."""
    units = int(bound * Fraction(2) ** fractional)
    return max(1, units.bit_length())


SUPPORTED_QUANTIZERS = "quantized_bits(bits, integer) or quantized_relu(bits, integer)"


def _cfg(quantizer: Any, where: str) -> tuple[str, dict[str, Any]]:
    config = quantizer.get_config() if hasattr(quantizer, "get_config") else None
    if config is None:
        name = getattr(quantizer, "__name__", type(quantizer).__name__)
        msg = f"layer '{where}': '{name}' is not a QKeras quantizer (use {SUPPORTED_QUANTIZERS})"
        raise TriggerError(msg)
    return type(quantizer).__name__, config


def _reject(where: str, quantizer: str, what: str) -> TriggerError:
    return TriggerError(f"layer '{where}': {quantizer} with {what} has no exact fixed-point form")


def quantizer_format(quantizer: Any, where: str) -> Fixed:
    """The exact ap_fixed format of a QKeras `quantized_bits` or `quantized_relu` quantizer."""
    name, c = _cfg(quantizer, where)
    bits, integer = int(c["bits"]), int(c.get("integer", 0))
    if integer < 0:  # QKeras raises 2 to a negative integer power, which TensorFlow refuses
        msg = f"layer '{where}': QKeras cannot run {name} with integer={integer} (use integer >= 0)"
        raise TriggerError(msg)
    if c.get("use_stochastic_rounding"):
        raise _reject(where, name, "stochastic rounding")
    if name == "quantized_bits":
        if c.get("alpha") not in (None, 1, 1.0):
            raise _reject(where, name, f"alpha={c.get('alpha')!r} (use alpha=1)")
        if c.get("symmetric"):
            raise _reject(where, name, "symmetric=1")
        if float(c.get("qnoise_factor", 1.0)) != 1.0:
            raise _reject(where, name, "qnoise_factor != 1")
        if c.get("keep_negative", True):
            if bits < 2:
                raise _reject(where, name, f"bits={bits}")
            # round(x * 2^(bits-1-integer)) clipped to [-2^(bits-1), 2^(bits-1) - 1]
            return Fixed(bits, integer + 1, True, "RND_CONV", "SAT")
        return Fixed(bits, integer, False, "RND_CONV", "SAT")
    if name == "quantized_relu":
        if c.get("use_sigmoid"):
            raise _reject(where, name, "use_sigmoid")
        if c.get("negative_slope", 0.0):
            raise _reject(where, name, "negative_slope != 0")
        if c.get("relu_upper_bound") is not None:
            raise _reject(where, name, "relu_upper_bound")
        if float(c.get("qnoise_factor", 1.0)) != 1.0:
            raise _reject(where, name, "qnoise_factor != 1")
        # round(x * 2^(bits-integer)) clipped to [0, 2^bits - 1]
        return Fixed(bits, integer, False, "RND_CONV", "SAT")
    msg = f"layer '{where}': quantizer {name} is not supported (use {SUPPORTED_QUANTIZERS})"
    raise TriggerError(msg)


def exact_values(values: np.ndarray, fmt: Fixed, where: str) -> np.ndarray:
    """Integer codes of `values` in units of the format's LSB; they must be exactly on the grid."""
    scaled = np.asarray(values, np.float64) * 2.0**fmt.fractional
    codes = np.rint(scaled)
    if not np.array_equal(codes, scaled):
        msg = f"layer '{where}': weights are not on the {fmt.hls()} grid after quantization"
        raise TriggerError(msg)
    return codes.astype(np.int64)


@dataclass(frozen=True)
class Accumulation:
    """Exact format of a dense layer's sums, and the significant bits they need."""

    accum: Fixed
    bound: Fraction  # largest magnitude of any partial sum
    significant_bits: int


def dense_accumulation(
    x: Fixed, kernel: np.ndarray, bias: np.ndarray | None, w: Fixed, b: Fixed | None
) -> Accumulation:
    """Format holding `bias + sum_i x_i * kernel_ij` exactly for every x the format allows.

    Every partial sum lies between the sum of the negative and the sum of the positive terms,
    so the bounds below cover the accumulator at every step, in any summation order.
    """
    fractional = x.fractional + w.fractional
    if b is not None:
        fractional = max(fractional, b.fractional)
    # Work in integer codes: value = code * 2^-fractional.
    w_codes = exact_values(kernel, w, "kernel").astype(object)  # (n_in, n_out)
    w_codes = w_codes * 2 ** (fractional - x.fractional - w.fractional)
    x_lo = int(x.min / x.lsb)
    x_hi = int(x.max / x.lsb)
    pos = np.maximum(w_codes, 0)
    neg = np.minimum(w_codes, 0)
    hi = (pos * x_hi + neg * x_lo).sum(axis=0)
    lo = (pos * x_lo + neg * x_hi).sum(axis=0)
    magnitude = (np.abs(w_codes) * max(-x_lo, x_hi)).sum(axis=0)
    if bias is not None and b is not None:
        b_codes = exact_values(bias, b, "bias").astype(object) * 2 ** (fractional - b.fractional)
        hi = hi + np.maximum(b_codes, 0)
        lo = lo + np.minimum(b_codes, 0)
        magnitude = magnitude + np.abs(b_codes)
    k = 2**fractional
    lo_all = Fraction(min(int(v) for v in lo), k)
    hi_all = Fraction(max(int(v) for v in hi), k)
    bound = Fraction(max(int(v) for v in magnitude), k)
    accum = smallest_holding(min(lo_all, Fraction(0)), max(hi_all, Fraction(0)), fractional)
    return Accumulation(accum, bound, significant_bits(bound, fractional))


def mean_pool_formats(x: Fixed, n: int) -> tuple[Fixed, Fixed]:
    """Accumulator and result of a mean over `n` (a power of two) values of format `x`.

    hls4ml's `avg` sums in accum_t, then divides in place; an ap_fixed quotient keeps the
    dividend's fractional bits, so log2(n) extra fractional bits make the division an exact
    shift. The mean never exceeds the largest input, so the result keeps the input's integer bits.
    """
    shift = n.bit_length() - 1
    if n <= 0 or 1 << shift != n:
        msg = f"mean pooling over {n} constituents: firmware needs a power of two to divide exactly"
        raise TriggerError(msg)
    accum = Fixed(x.width + 2 * shift, x.integer + shift, x.signed)
    result = Fixed(x.width + shift, x.integer, x.signed)
    return accum, result


def sum_accumulation(a: Fixed, b: Fixed) -> Accumulation:
    """The narrowest format holding a + b exactly for every a and b the two formats allow, and
    the significant bits the sum needs."""
    fractional = max(a.fractional, b.fractional)
    lo, hi = a.min + b.min, a.max + b.max
    bound = max(-lo, hi)
    return Accumulation(
        smallest_holding(min(lo, 0), max(hi, 0), fractional),
        bound,
        significant_bits(bound, fractional),
    )


def on_grid(values: np.ndarray, fmt: Fixed) -> np.ndarray:
    """Values rounded half to even onto `fmt`'s grid and saturated to its range."""
    lsb = float(fmt.lsb)
    return to_codes(np.asarray(values, np.float64) / lsb, fmt.quantizing()) * lsb


def to_codes(scaled: np.ndarray, fmt: Fixed) -> np.ndarray:
    """Values in units of `fmt`'s LSB -> its integer codes by its rounding mode (RND_CONV half
    to even, as QKeras; RND half up; TRN toward minus infinity), then saturated or wrapped to
    its range, as ap_fixed casts (in place: `scaled` is a float array)."""
    if fmt.rounding == "RND_CONV":
        np.rint(scaled, out=scaled)
    else:
        if fmt.rounding == "RND":
            scaled += 0.5
        np.floor(scaled, out=scaled)
    low, high = float(fmt.min / fmt.lsb), float(fmt.max / fmt.lsb)
    if fmt.saturation == "SAT":
        return np.clip(scaled, low, high, out=scaled)
    scaled -= low
    np.mod(scaled, high - low + 1, out=scaled)
    scaled += low
    return scaled
