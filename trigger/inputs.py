"""The firmware's input contract: Level-1 words in, the network's input features out.

A Phase-2-style correlator hands the tagger, per jet, up to N particle candidates as
fixed-width words and the jet finder's own words:

    candidate  pT   unsigned 14 bits, LSB 0.25 GeV        (0 .. 4095.75 GeV)
               eta  signed 12 bits, LSB pi/720            (-2048 .. 2047)
               phi  signed 11 bits, LSB pi/720            (-1024 .. 1023; +-pi = +-720)
    jet        pT, eta, phi as above; count unsigned 8 bits (candidates in the jet, all of them)

Padding candidates are all-zero words; real candidates have pT > 0 and may come in any order.
The input stage turns these integers into the network's features, every step in integer or
fixed-point arithmetic so that this module (the reference, used for training), the HLS C++
(`trigger/hls/input_stage.h`) and the Verilog (`trigger.rtl.trace.trace_input_stage`) agree bit
for bit:

    raw feature   pt    = candidate pT word
                  deta  = eta - jet eta
                  dphi  = phi - jet phi, wrapped into [-720, 720) (phi's wrap-around at +-pi)
                  dr2   = deta^2 + dphi^2              (deltaR^2: no square root needed)
                  count = the jet's candidate count    (a jet-level input on every candidate)
                  etarot, phirot = (deta, dphi) rotated so that the jet's pT-weighted
                                   principal axis lies along eta (see `principal_axis_frame`)
                  present = 1                          (center 0, shift 0: the feature is 1
                                   for a candidate and 0 for padding, what masked pooling
                                   needs to tell them apart)
    feature       (raw - center) * 2^-shift, rounded half to even onto the input port's grid
                  and saturated to its range; 0 for every feature of a padding candidate

`center` (an integer) and `shift` (a power of two) are fitted on the training split, so the
normalisation is a subtraction and a shift: no multiplier, no division.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trigger.errors import TriggerError

ANGLE_LSB = math.pi / 720
PT_LSB = 0.25
HALF_TURN = 720  # pi in angle words


@dataclass(frozen=True)
class Word:
    """An integer word: `bits` wide, signed or not, value = code * lsb."""

    bits: int
    signed: bool
    lsb: float

    @property
    def low(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def high(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1


PT_WORD = Word(14, False, PT_LSB)
ETA_WORD = Word(12, True, ANGLE_LSB)
PHI_WORD = Word(11, True, ANGLE_LSB)
COUNT_WORD = Word(8, False, 1.0)
CANDIDATE_WORDS = (PT_WORD, ETA_WORD, PHI_WORD)
JET_WORDS = (PT_WORD, ETA_WORD, PHI_WORD, COUNT_WORD)

# Features the firmware's input stage computes, in the order of their codes in the C++.
FEATURES = ("pt", "deta", "dphi", "dr2", "count", "etarot", "phirot", "present")
# Features that are one value per jet, repeated on every candidate slot.
JET_LEVEL_FEATURES = frozenset({"count"})
# Features that are not normalised: center 0 and shift 0 whatever the training split.
UNNORMALISED = ("present",)
# Normalisation shifts the input stage supports (the C++ keeps 16 fractional bits).
MAX_SHIFT = 16


# The principal-axis frame, in integers (shifts, adds and sign tests: CORDIC, no table, no
# division). Per jet, the pT-weighted second moments of the candidates' (deta, dphi) give the
# axis angle theta = atan2(2 Sxy, Sxx - Syy) / 2; every candidate is then rotated by -theta.
# The moments use coarse copies of the words (weights pT >> 2, 1 GeV, saturated to 8 bits;
# angles >> 2 saturated to 7 bits signed, +-1.1): they only steer the rotation, and with up to
# AXIS_MAX_CANDIDATES candidates every value of the CORDIC stays within 32 bits.
MOMENT_PT_SHIFT, MOMENT_PT_MAX = 2, 255
MOMENT_ANGLE_SHIFT, MOMENT_ANGLE_MAX = 2, 63
AXIS_MAX_CANDIDATES = 64
ANGLE_PI = 4096  # pi in the units of the axis angle
VECTORING_STEPS = 8  # CORDIC steps finding 2 theta (last step atan(2^-7) = 0.45 degrees)
ROTATION_STEPS = 6  # CORDIC steps rotating each candidate (last step 1.8 degrees)
VECTORING_GUARD = 2  # bits below the moments' LSB kept through the vectoring
ROTATION_GUARD = 2  # bits below the angle word's LSB kept through the rotation
ATAN_STEP = tuple(round(math.atan(2.0**-i) * ANGLE_PI / math.pi) for i in range(VECTORING_STEPS))


def _saturate(values: np.ndarray, high: int) -> np.ndarray:
    return np.clip(values, -high - 1, high)


def axis_moments(pt: np.ndarray, deta: np.ndarray, dphi: np.ndarray) -> tuple[np.ndarray, ...]:
    """(Sxx - Syy, 2 Sxy) per jet from (jets, N) words; padding (pT 0) weighs nothing."""
    w = np.minimum(pt >> MOMENT_PT_SHIFT, MOMENT_PT_MAX)
    e = _saturate(deta >> MOMENT_ANGLE_SHIFT, MOMENT_ANGLE_MAX)
    f = _saturate(dphi >> MOMENT_ANGLE_SHIFT, MOMENT_ANGLE_MAX)
    we, wf = w * e, w * f
    return (we * e - wf * f).sum(axis=1), 2 * (we * f).sum(axis=1)


def axis_angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """atan2(b, a) / 2 in units of pi / ANGLE_PI, by CORDIC vectoring.

    A vector left of the y axis is first turned by -+90 degrees, so the steps (which reach
    +-99.7 degrees) cover the whole circle. Each shift is an arithmetic (floor) shift, below
    VECTORING_GUARD guard bits.
    """
    a, b = a << VECTORING_GUARD, b << VECTORING_GUARD
    left = a < 0
    up = b >= 0
    x = np.where(left, np.where(up, b, -b), a)
    y = np.where(left, np.where(up, -a, a), b)
    z = np.where(left, np.where(up, ANGLE_PI // 2, -ANGLE_PI // 2), 0)
    for i, step in enumerate(ATAN_STEP):
        down = y >= 0
        x, y = (
            np.where(down, x + (y >> i), x - (y >> i)),
            np.where(down, y - (x >> i), y + (x >> i)),
        )
        z = np.where(down, z + step, z - step)
    return z >> 1


def rotation_directions(theta: np.ndarray) -> np.ndarray:
    """(jets, ROTATION_STEPS) bool: True where step i turns by -atan(2^-i), CORDIC rotation."""
    directions = []
    for step in ATAN_STEP[:ROTATION_STEPS]:
        positive = theta >= 0
        directions.append(positive)
        theta = np.where(positive, theta - step, theta + step)
    return np.stack(directions, axis=-1)


def principal_axis_frame(
    pt: np.ndarray, deta: np.ndarray, dphi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(etarot, phirot): (jets, N) candidate coordinates in the jet's principal-axis frame, in
    angle words times 2^ROTATION_GUARD times the CORDIC gain (1.65): the normalisation after
    it absorbs both."""
    directions = rotation_directions(axis_angle(*axis_moments(pt, deta, dphi)))
    x, y = deta << ROTATION_GUARD, dphi << ROTATION_GUARD
    for i in range(ROTATION_STEPS):
        positive = directions[:, i : i + 1]
        x, y = (
            np.where(positive, x + (y >> i), x - (y >> i)),
            np.where(positive, y - (x >> i), y + (x >> i)),
        )
    return x, y


def to_words(values: np.ndarray, word: Word) -> np.ndarray:
    """Physical values as words: rounded half to even to the LSB, saturated at the word range."""
    codes = np.rint(np.asarray(values, np.float64) / word.lsb)
    return np.clip(codes, word.low, word.high).astype(np.int64)


def check_features(features: Sequence[str]) -> None:
    """One-line error naming any feature the firmware's input stage cannot compute."""
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        msg = (
            f"feature '{unknown[0]}' is not computed by the firmware's input stage "
            f"(it computes: {', '.join(FEATURES)})"
        )
        raise TriggerError(msg)
    if len(set(features)) != len(features) or not features:
        msg = f"features must be distinct and at least one, got {list(features)}"
        raise TriggerError(msg)


def wrapped_dphi(phi: np.ndarray, jet_phi: np.ndarray) -> np.ndarray:
    """phi - jet phi in angle words, wrapped into [-720, 720)."""
    d = np.asarray(phi, np.int64) - np.asarray(jet_phi, np.int64)
    d = np.where(d >= HALF_TURN, d - 2 * HALF_TURN, d)
    return np.where(d < -HALF_TURN, d + 2 * HALF_TURN, d)


def raw_features(candidates: np.ndarray, jets: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """(jets, N, F) int64 raw features from (jets, N, 3) candidate and (jets, 4) jet words."""
    pt, eta, phi = (candidates[..., k].astype(np.int64) for k in range(3))
    jet = jets.astype(np.int64)
    deta = eta - jet[:, None, 1]
    dphi = wrapped_dphi(phi, jet[:, None, 2])
    columns = {
        "pt": pt,
        "deta": deta,
        "dphi": dphi,
        "dr2": deta * deta + dphi * dphi,
        "count": np.broadcast_to(jet[:, None, 3], pt.shape),
        "present": np.ones_like(pt),
    }
    if {"etarot", "phirot"} & set(features):
        columns["etarot"], columns["phirot"] = principal_axis_frame(pt, deta, dphi)
    return np.stack([columns[f] for f in features], axis=-1)


@dataclass(frozen=True)
class InputStage:
    """The firmware's input stage: which features, and the integer normalisation of each.

    `input_bits` / `input_integer` are the input port's format in QKeras's convention
    (signed; `integer` bits left of the point, sign excluded): the student's input quantizer.
    """

    n_constituents: int
    features: tuple[str, ...]
    center: tuple[int, ...]
    shift: tuple[int, ...]
    input_bits: int
    input_integer: int

    def __post_init__(self) -> None:
        check_features(self.features)
        n = len(self.features)
        if len(self.center) != n or len(self.shift) != n:
            msg = f"input stage: {n} features need {n} centers and {n} shifts"
            raise TriggerError(msg)
        if {"etarot", "phirot"} & set(self.features) and self.n_constituents > AXIS_MAX_CANDIDATES:
            msg = (
                f"the principal-axis frame (etarot, phirot) takes up to {AXIS_MAX_CANDIDATES} "
                f"candidates, not {self.n_constituents}"
            )
            raise TriggerError(msg)
        if any(not 0 <= s <= MAX_SHIFT for s in self.shift):
            msg = f"input stage: shifts must lie in [0, {MAX_SHIFT}], got {list(self.shift)}"
            raise TriggerError(msg)

    @property
    def fractional_bits(self) -> int:
        return self.input_bits - 1 - self.input_integer

    def apply(self, candidates: np.ndarray, jets: np.ndarray) -> np.ndarray:
        """(jets, N, F) float32 features, exactly what the firmware computes from the words."""
        candidates = candidates[:, : self.n_constituents]
        raw = raw_features(candidates, jets, self.features)
        # (raw - center) * 2^-shift on the port's grid: one exact scaling by a power of two.
        codes = (raw - np.asarray(self.center)) * 2.0 ** (
            self.fractional_bits - np.asarray(self.shift, np.float64)
        )
        top = 2 ** (self.input_bits - 1)
        np.clip(np.rint(codes, out=codes), -top, top - 1, out=codes)
        np.copyto(codes, 0.0, where=candidates[..., :1] == 0)  # padding: every feature 0
        return (codes * 2.0**-self.fractional_bits).astype(np.float32)

    def apply_words(self, rows: np.ndarray) -> np.ndarray:
        """`apply` on port rows, (jets, 3 N + 4) as `JetSample.words` and the firmware take them."""
        return self.apply(*split_words(rows, self.n_constituents))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> InputStage:
        try:
            fields = json.loads(Path(path).read_text())
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
        except (ValueError, TypeError) as error:
            msg = f"{path}: not an input-stage contract ({error})"
            raise TriggerError(msg) from None


def split_words(rows: np.ndarray, n_constituents: int) -> tuple[np.ndarray, np.ndarray]:
    """Port rows -> (jets, N, 3) candidate words and (jets, 4) jet words."""
    rows = check_port_words(rows)
    if rows.shape[1] != 3 * n_constituents + 4:
        msg = (
            f"rows of {rows.shape[1]} words do not match {n_constituents} candidates "
            f"(3 x {n_constituents} + 4 = {3 * n_constituents + 4} words)"
        )
        raise TriggerError(msg)
    candidates = rows[:, : 3 * n_constituents].reshape(len(rows), n_constituents, 3)
    return candidates, rows[:, 3 * n_constituents :]


def fit_input_stage(
    candidates: np.ndarray,
    jets: np.ndarray,
    features: Sequence[str],
    input_bits: int,
    input_integer: int,
) -> InputStage:
    """Center each feature on its mean and shift it by the power of two nearest its spread,
    over the real candidates of the training split (`present` stays 1)."""
    raw = raw_features(candidates, jets, features)
    values = raw[candidates[..., 0] > 0].astype(np.float64)
    if len(values) == 0:
        msg = "the training split holds no candidates"
        raise TriggerError(msg)
    spread = np.maximum(values.std(axis=0), 1.0)
    shift = np.clip(np.rint(np.log2(spread)), 0, MAX_SHIFT).astype(int)
    center = np.rint(values.mean(axis=0)).astype(int)
    fixed = np.isin(np.asarray(features), UNNORMALISED)
    center[fixed], shift[fixed] = 0, 0
    return InputStage(
        n_constituents=candidates.shape[1],
        features=tuple(features),
        center=tuple(int(c) for c in center),
        shift=tuple(int(s) for s in shift),
        input_bits=input_bits,
        input_integer=input_integer,
    )


def port_words(n_constituents: int) -> list[tuple[str, Word]]:
    """Name and word of every value in a jet's row at the firmware's port, in order."""
    names = ("pt", "eta", "phi")
    row = [
        (f"candidate {i} {name}", word)
        for i in range(n_constituents)
        for name, word in zip(names, CANDIDATE_WORDS, strict=True)
    ]
    return row + [(f"jet {n}", w) for n, w in zip((*names, "count"), JET_WORDS, strict=True)]


@functools.cache
def _port_bounds(n_constituents: int) -> tuple[np.ndarray, np.ndarray]:
    words = [word for _, word in port_words(n_constituents)]
    return np.array([w.low for w in words]), np.array([w.high for w in words])


def check_port_words(rows: np.ndarray) -> np.ndarray:
    """(jets, 3 N + 4) rows of L1 words as int64; a one-line error for any value that is not
    an integer within its word's range (words are saturated when made, see `to_words`)."""
    rows = np.asarray(rows)
    n = (rows.shape[-1] - 4) // 3
    if rows.ndim != 2 or rows.shape[-1] != 3 * n + 4 or n < 1:
        msg = f"L1 words come as (jets, 3 N + 4) rows, got shape {rows.shape}"
        raise TriggerError(msg)
    low, high = _port_bounds(n)
    bad = (rows < low) | (rows > high)
    if not np.issubdtype(rows.dtype, np.integer):
        bad |= rows != np.rint(rows)
    if bad.any():
        jet, column = (int(v[0]) for v in np.nonzero(bad))
        name, word = port_words(n)[column]
        msg = (
            f"jet {jet}: {name} is {rows[jet, column]:g}, outside its {word.bits}-bit word "
            f"(integers {word.low} to {word.high})"
        )
        raise TriggerError(msg)
    return rows.astype(np.int64, copy=False)


def random_words(jets: int, n_constituents: int, rng: np.random.Generator) -> np.ndarray:
    """Valid port rows of random jets (benchmarks and tests): 1 to N candidates each, spread
    within 0.8 of the jet axis, phi wrapping at +-pi, the rest zero padding."""
    real = np.arange(n_constituents) < rng.integers(1, n_constituents + 1, (jets, 1))
    jet_eta = rng.integers(-460, 461, (jets, 1))
    jet_phi = rng.integers(-720, 721, (jets, 1))
    pt = rng.integers(4, 2000, (jets, n_constituents))
    eta = jet_eta + rng.integers(-184, 185, (jets, n_constituents))
    phi = wrapped_dphi(jet_phi + rng.integers(-184, 185, (jets, n_constituents)), 0)
    candidates = np.where(real[..., None], np.stack([pt, eta, phi], -1), 0)
    count = np.minimum(real.sum(1, keepdims=True) + rng.integers(0, 40, (jets, 1)), 255)
    jet = np.concatenate([np.minimum(pt.sum(1, keepdims=True), 16383), jet_eta, jet_phi, count], 1)
    return np.concatenate([candidates.reshape(jets, -1), jet], axis=1)
