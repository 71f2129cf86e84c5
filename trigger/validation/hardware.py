"""Hardware figures for the report: synthesis reports when they exist, else a labelled estimate.

An estimate is never presented as a synthesis result: every figure set carries `source` and,
for estimates, `method`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HARDWARE_KEYS = ("latency_cycles", "latency_ns", "ii", "lut", "ff", "dsp", "bram")

# Constant-coefficient products with both operands at most this wide map to LUTs in Vivado;
# wider ones go to DSP48 slices (a rule of thumb, stated in the method text).
LUT_MULTIPLIER_MAX_BITS = 10
ESTIMATE_METHOD = (
    "estimate from the model's nonzero weights and bit widths, not a synthesis result: "
    "each nonzero weight is one constant multiplication per use (x N constituents in phi "
    "layers, fully unrolled io_parallel/Latency); products with both operands <= "
    f"{LUT_MULTIPLIER_MAX_BITS} bits cost (input bits x nonzero CSD digits of the weight) LUTs, "
    "wider ones one DSP; each nonzero weight adds an accumulator adder of one LUT per "
    "accumulator bit; FFs = one register per layer-output bit per pipeline stage; latency = per "
    "layer 1 multiply cycle + adder-tree depth ceil(log2 fan-in) at 2 levels per cycle, + "
    "ceil(log2 N)/2 cycles for pooling"
)


@dataclass(frozen=True)
class DenseCost:
    """What the estimate needs of one dense layer."""

    name: str
    kernel: np.ndarray  # (fan_in, fan_out), quantised values
    weight_bits: int
    weight_fraction_bits: int
    input_bits: int
    output_bits: int
    uses: int  # times the layer is instantiated (N for per-constituent layers)


def _csd_digits(value: float, fraction_bits: int) -> int:
    """Nonzero digits of a weight in canonical signed-digit form: adders in a shift-add product."""
    n = abs(round(value * 2**fraction_bits))
    digits = 0
    while n:
        if n & 1:
            digits += 1
            n = n - 1 if (n & 3) == 1 else n + 1
        n >>= 1
    return digits


def estimate(layers: list[DenseCost], n_constituents: int, clock_period_ns: float) -> dict:
    """Resource and latency estimate of a fully unrolled dense network (method in the output)."""
    lut = dsp = ff = 0
    cycles = 0
    for layer in layers:
        nonzero = layer.kernel[layer.kernel != 0]
        fan_in = int(np.max(np.count_nonzero(layer.kernel, axis=0), initial=1))
        accumulator_bits = layer.weight_bits + layer.input_bits + math.ceil(math.log2(fan_in + 1))
        narrow = max(layer.weight_bits, layer.input_bits) <= LUT_MULTIPLIER_MAX_BITS
        if narrow:
            digits = sum(_csd_digits(w, layer.weight_fraction_bits) for w in nonzero)
            lut += layer.uses * layer.input_bits * max(digits - len(nonzero), 0)
        else:
            dsp += layer.uses * len(nonzero)
        lut += layer.uses * len(nonzero) * accumulator_bits
        ff += layer.uses * layer.kernel.shape[1] * layer.output_bits * 2
        cycles += 1 + math.ceil(math.ceil(math.log2(max(fan_in, 2))) / 2)
    cycles += math.ceil(math.ceil(math.log2(max(n_constituents, 2))) / 2)
    return {
        "source": "estimate",
        "method": ESTIMATE_METHOD,
        "latency_cycles": cycles,
        "latency_ns": cycles * clock_period_ns,
        "ii": 1,
        "lut": int(lut),
        "ff": int(ff),
        "dsp": int(dsp),
        "bram": 0,
    }


def from_reports(project_dir: Path) -> dict | None:
    """Figures from a synthesis report or an RTL flow, whichever `emit-hls` left behind."""
    for name, source in (("synthesis.json", "synthesis"), ("rtl/hardware.json", "rtl")):
        path = Path(project_dir) / name
        if path.is_file():
            figures = json.loads(path.read_text())
            return {"source": figures.get("source", source), **figures}
    return None
