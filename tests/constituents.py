"""Test helpers shared by the exactness and permutation-invariance tests of models, emulator,
RTL and pipeline."""

from __future__ import annotations

import numpy as np


def permute_real_constituents(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of `x` (jets, N, F) with each jet's real (not all-zero) constituents reordered.

    Padded slots stay where they are, so only the order the model must ignore changes.
    """
    permuted = x.copy()
    for jet, out in zip(x, permuted, strict=True):
        real = np.flatnonzero(np.any(jet != 0, axis=-1))
        out[real] = jet[rng.permutation(real)]
    return permuted


def permute_candidates(words: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Port rows (jets, 3 n + 4) with each jet's real candidates in another order."""
    candidates = permute_real_constituents(words[:, : 3 * n].reshape(len(words), n, 3), rng)
    return np.concatenate([candidates.reshape(len(words), -1), words[:, 3 * n :]], axis=1)


def edge_case_words(n: int, rng: np.random.Generator) -> np.ndarray:
    """Port rows at the edges of the input stage: phi wrap-around at +-pi (every difference
    from -1440 to 1440 around the wrap), saturated pT, extreme eta, one-candidate jets, jets
    with more candidates than N (count above N, up to 255), and all-zero padding."""
    rows = []

    def jet(candidates, jet_words):
        row = np.zeros(3 * n + 4, np.int64)
        flat = np.asarray(candidates, np.int64).reshape(-1)[: 3 * n]
        row[: len(flat)] = flat
        row[3 * n :] = jet_words
        rows.append(row)

    for jet_phi in (720, -720, 719, -719, 0):
        for start in range(-1024, 1024, n):
            phis = np.clip(np.arange(start, start + n), -1024, 1023)
            jet([(4 + k, 3, p) for k, p in enumerate(phis)], (900 * 4, 0, jet_phi, n))
    top = 2**13 - 1  # within the 14-bit pT word; 16383 is its largest value
    jet([(16383, 2047, 1023)] + [(16383, -2048, -1024)] * (n - 1), (16383, -2048, 1023, 255))
    jet([(16383, 0, 0)], (16383, 2047, -1024, 1))
    jet([(top, 5, 5)], (top, 0, 0, 1))
    for count in (1, n, n + 1, 255):
        jet([(8 + k, k, -k) for k in range(n)], (4000, 10, -10, count))
    jet([], (4000, 100, 100, 40))  # every candidate padding
    jet([], (0, 0, 0, 0))
    for _ in range(20):  # one real candidate, anywhere
        jet(
            [(rng.integers(1, 16384), rng.integers(-2048, 2048), rng.integers(-1024, 1024))],
            (rng.integers(0, 16384), rng.integers(-2048, 2048), rng.integers(-1024, 1024), 1),
        )
    return np.asarray(rows)


# Centre and shift of each feature for `trigger.inputs.random_words` jets: about unit spread.
RANDOM_WORD_NORMALISATION = {
    "pt": (500, 9), "deta": (0, 6), "dphi": (0, 6), "dr2": (9000, 13), "count": (30, 4),
    "etarot": (0, 9), "phirot": (0, 9), "present": (0, 0),
}  # fmt: skip


def stage_for_random_words(n: int, features: tuple[str, ...], bits: int, integer: int):
    """An input stage for random words (no data needed), the network's port `bits`/`integer`."""
    from trigger.inputs import InputStage

    center, shift = zip(*(RANDOM_WORD_NORMALISATION[f] for f in features), strict=True)
    return InputStage(n, tuple(features), center, shift, bits, integer)
