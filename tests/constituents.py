"""Test helper shared by the permutation-invariance tests of models, emulator and pipeline."""

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
