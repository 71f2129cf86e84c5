"""The fast emulator: the firmware's arithmetic vectorised over jets with numpy.

It runs what the HLS project computes, from L1 words to logits: the input stage
(`trigger.inputs`, integer arithmetic) and then the network as `Plan.arithmetic()` states it,
the same operations the da4ml trace turns into Verilog. Every value is a fixed-point number
held exactly in floating point: each dense sum fits its accumulator (the plan sizes it), so
products and sums are exact in whatever order BLAS adds them, as long as every accumulator's
significant bits fit the float type: float32 (24 bits) where they do, as for every shipped
QKeras recipe, else float64 (53); a plan needing more is refused (`exact_dtype`). Rounding and
saturation happen where the firmware's quantizers are, in their modes (half to even and
saturation for QKeras). The HLS C++ emulator (`trigger.hls.emulator`) stays the reference:
tests hold the two equal bit for bit. Where Keras's float32 sums are not exact, emit-hls checks
the firmware against this plan's arithmetic instead (`trigger.hls.stage.exact_reference`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from trigger.config import FirmwareConfig
from trigger.errors import TriggerError
from trigger.hls.convert import Operation, Plan
from trigger.hls.precision import Fixed, to_codes
from trigger.inputs import InputStage, split_words

SIGNIFICANT_BITS = {np.float32: 24, np.float64: 53}
# Jets per pass: the intermediate arrays of a block stay in cache (large arrays spend more
# time on fresh memory pages than on arithmetic).
BLOCK_JETS = 1024


def _dense(x: np.ndarray, op: Operation) -> np.ndarray:
    kernel, *bias = op.weights
    y = (x.reshape(-1, x.shape[-1]) @ kernel).reshape(*x.shape[:-1], kernel.shape[1])  # one GEMM
    return y + bias[0] if bias else y


def _round(x: np.ndarray, op: Operation) -> np.ndarray:
    """Onto the format's grid in its modes (in place: x is an intermediate)."""
    lsb = float(op.fmt.lsb)
    x *= 1.0 / lsb  # a power of two: exact
    to_codes(x, op.fmt)
    x *= lsb
    return x


def _relu(x: np.ndarray, op: Operation) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def _mean(x: np.ndarray, op: Operation) -> np.ndarray:
    n = x.shape[1]
    return x.sum(axis=1) * 2.0 ** -(n.bit_length() - 1)  # n a power of two: a shift


def _max(x: np.ndarray, op: Operation) -> np.ndarray:
    return x.max(axis=1)


def _flatten(x: np.ndarray, op: Operation) -> np.ndarray:
    return x.reshape(len(x), -1)


def _add(x: np.ndarray, saved: np.ndarray) -> np.ndarray:
    """saved + x, exact; a jet's context x (no candidate axis) goes onto every candidate."""
    return saved + (x[:, None, :] if x.ndim < saved.ndim else x)


_APPLY = {
    "dense": _dense,
    "round": _round,
    "relu": _relu,
    "mean": _mean,
    "max": _max,
    "flatten": _flatten,
}


class FastEmulator:
    """The whole tagger, words to logits, on a batch of jets at once."""

    def __init__(self, stage: InputStage, operations: list[Operation], dtype: type) -> None:
        self.stage = stage
        self.dtype = dtype
        self.operations = [
            replace(op, weights=tuple(w.astype(dtype) for w in op.weights)) for op in operations
        ]

    def __call__(self, words: np.ndarray) -> np.ndarray:
        """(jets, 3 N + 4) L1 words -> (jets, outputs) float64 logits, as the firmware computes
        them."""
        candidates, jets = split_words(words, self.stage.n_constituents)
        blocks = [
            self._block(candidates[i : i + BLOCK_JETS], jets[i : i + BLOCK_JETS])
            for i in range(0, max(len(jets), 1), BLOCK_JETS)
        ]
        return np.concatenate(blocks).astype(np.float64)

    def _block(self, candidates: np.ndarray, jets: np.ndarray) -> np.ndarray:
        return run_operations(
            self.stage.apply(candidates, jets).astype(self.dtype), self.operations
        )


def run_operations(
    x: np.ndarray,
    operations: list[Operation],
    before: Callable[[Operation, np.ndarray], None] | None = None,
) -> np.ndarray:
    """The operations on a batch x (jets first), in order; `before(op, x)` sees each op's input."""
    saved: dict[str, np.ndarray] = {}
    for op in operations:
        if before is not None:
            before(op, x)
        if op.kind == "save":
            saved[op.name] = x.copy()  # later operations may work on x in place
        elif op.kind == "add":
            x = _add(x, saved[op.source])
        else:
            x = _APPLY[op.kind](x, op)
    return x


def exact_dtype(plan: Any) -> type:
    """The narrowest float type holding every value and every sum of `plan` exactly: float32
    (24 significant bits) or float64 (53). Wider is refused: no emulator of trigger's, nor
    the C++ emulator's `double` outputs, could hold it."""
    bits = {
        f"layer '{lp.name}' {key} {fmt.hls()}": fmt.width
        for lp in plan.layers
        for key, fmt in lp.precision.items()
    }
    bits |= {
        f"layer '{lp.name}' sums": lp.accumulation.significant_bits
        for lp in plan.layers
        if lp.accumulation
    }
    widest = max(bits, key=bits.get)
    for dtype, significant in SIGNIFICANT_BITS.items():
        if bits[widest] <= significant:
            return dtype
    msg = (
        f"{widest} needs {bits[widest]} significant bits; trigger's emulators hold values "
        f"exactly in float64, up to 53: narrow that format"
    )
    raise TriggerError(msg)


def plan_emulator(plan: Any, stage: InputStage) -> FastEmulator:
    """The fast emulator of a converted plan behind `stage`."""
    return FastEmulator(stage, plan.arithmetic(), exact_dtype(plan))


def fast_emulator(model: Any, stage: InputStage, firmware: FirmwareConfig) -> FastEmulator:
    """The fast emulator of `model` behind `stage`, from the same plan hls4ml's project has."""
    from trigger.hls.convert import plan_student

    return plan_emulator(plan_student(model, firmware), stage)


# What emit-hls writes into the firmware directory for the fast emulator: the plan's operations
# (kind, name, format) and their weights, so that it loads without TensorFlow.
ARITHMETIC = "fast_emulator.npz"


def save_arithmetic(firmware_dir: str | Path, plan: Plan) -> Path:
    """Write the plan's arithmetic (`Plan.arithmetic()`, exact float64 weights) to
    `firmware_dir/fast_emulator.npz`."""
    operations = plan.arithmetic()
    layout = {
        "dtype": np.dtype(exact_dtype(plan)).name,
        "operations": [
            {
                "kind": op.kind,
                "name": op.name,
                "weights": len(op.weights),
                "format": None if op.fmt is None else asdict(op.fmt),
                "source": op.source,
            }
            for op in operations
        ],
    }
    weights = {
        f"op{i}_weight{j}": w for i, op in enumerate(operations) for j, w in enumerate(op.weights)
    }
    path = Path(firmware_dir) / ARITHMETIC
    with path.open("wb") as handle:  # np.savez would append .npz to a name without it
        np.savez(handle, layout=np.array(json.dumps(layout)), **weights)
    return path


def _load_arithmetic(path: Path, stage: InputStage) -> FastEmulator:
    with np.load(path, allow_pickle=False) as stored:
        layout = json.loads(str(stored["layout"]))
        operations = [
            Operation(
                op["kind"],
                op["name"],
                tuple(stored[f"op{i}_weight{j}"] for j in range(op["weights"])),
                None if op["format"] is None else Fixed(**op["format"]),
                op.get("source"),
            )
            for i, op in enumerate(layout["operations"])
        ]
    return FastEmulator(stage, operations, np.dtype(layout["dtype"]).type)


def load_fast_emulator(firmware_dir: str | Path) -> FastEmulator:
    """The fast emulator of an emitted firmware directory: its input stage and the arithmetic
    emit-hls recorded (`fast_emulator.npz`, no TensorFlow needed). A directory emitted without
    that file is planned again from its student and firmware settings (TensorFlow)."""
    firmware_dir = Path(firmware_dir)
    stage = InputStage.load(firmware_dir / "input_stage.json")
    if (firmware_dir / ARITHMETIC).is_file():
        return _load_arithmetic(firmware_dir / ARITHMETIC, stage)
    from trigger.taggers import load_model

    conversion = json.loads((firmware_dir / "conversion.json").read_text())
    firmware = FirmwareConfig(**conversion["firmware"])
    return fast_emulator(load_model(firmware_dir / "student.h5"), stage, firmware)
