"""Substructure observables of L1 candidates: what a classifier without a network can reach.

N-subjettiness (arXiv:1011.2268, beta = 1, exclusive-kT axes) and energy correlation functions
(arXiv:1305.0007, beta = 1: e2, e3 and the ratios C2 = e3 / e2^2, D2 = e3 / e2^3) are the
observables jet-substructure taggers are built from. A gradient-boosted classifier on them, the
jet mass, the soft-drop mass and the candidate count estimates how well the candidates separate
the five classes at all: the data's ceiling, against which a network's accuracy is read
(`scripts/bench_ceiling.py`). Angles are the L1 words' (pseudorapidity, azimuth), momenta the
words' pT.
"""

from __future__ import annotations

import numpy as np

from trigger.inputs import ANGLE_LSB, PT_LSB

R0 = 0.8
N_SUBJETTINESS = (1, 2, 3)
NAMES = ("tau1", "tau2", "tau3", "tau21", "tau32", "e2", "e3", "c2", "d2")
# Jets per batch of the e3 matrix products: (batch, N, N) float64 stays a few tens of MB.
_BATCH = 512


def from_words(candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(jets, N, 3) pT/eta/phi words -> pT [GeV], eta, phi; empty slots have pT 0."""
    pt = candidates[..., 0] * PT_LSB
    eta = candidates[..., 1] * ANGLE_LSB
    phi = candidates[..., 2] * ANGLE_LSB
    return pt.astype(np.float64), eta.astype(np.float64), phi.astype(np.float64)


def _delta_r(eta_a, phi_a, eta_b, phi_b) -> np.ndarray:
    """Distance in (eta, phi) of angles within [-pi, pi]: one turn corrects any difference
    (a float modulo would cost most of the time of the energy correlations)."""
    dphi = phi_a - phi_b
    dphi = np.where(dphi > np.pi, dphi - 2 * np.pi, np.where(dphi < -np.pi, dphi + 2 * np.pi, dphi))
    deta = eta_a - eta_b
    return np.sqrt(deta * deta + dphi * dphi)


def _kt_axes(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, n: int) -> np.ndarray:
    """(jets, n, 2) eta/phi of the n exclusive-kT subjets of each jet (FastJet, E-scheme).

    Every jet must hold at least n candidates."""
    import warnings

    import awkward as ak
    import fastjet

    present = pt > 0
    counts = present.sum(axis=1)
    flat_pt, flat_eta, flat_phi = pt[present], eta[present], phi[present]
    # Massless four-momenta: the words carry no mass.
    px, py = flat_pt * np.cos(flat_phi), flat_pt * np.sin(flat_phi)
    pz, e = flat_pt * np.sinh(flat_eta), flat_pt * np.cosh(flat_eta)
    particles = ak.unflatten(ak.zip({"px": px, "py": py, "pz": pz, "E": e}), counts)
    sequence = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.kt_algorithm, R0))
    with warnings.catch_warnings():
        # The Python binding warns on every exclusive_jets call, whatever the algorithm.
        warnings.filterwarnings("ignore", message="dcut and exclusive jets")
        subjets = sequence.exclusive_jets(n_jets=n)
    sx, sy, sz = (np.asarray(ak.to_numpy(subjets[k])) for k in ("px", "py", "pz"))
    spt = np.hypot(sx, sy)
    return np.stack([np.arcsinh(sz / np.maximum(spt, 1e-12)), np.arctan2(sy, sx)], axis=-1)


def n_subjettiness(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, n: int) -> np.ndarray:
    """tau_n (beta = 1) per jet: sum of pT times the distance to the nearest of n exclusive-kT
    axes, over R0 times the scalar pT sum. A jet with at most n candidates has tau_n = 0."""
    tau = np.zeros(len(pt))
    enough = (pt > 0).sum(axis=1) > n
    if not enough.any():
        return tau
    p, h, f = pt[enough], eta[enough], phi[enough]
    axes = _kt_axes(p, h, f, n)
    distance = _delta_r(h[:, :, None], f[:, :, None], axes[:, None, :, 0], axes[:, None, :, 1])
    tau[enough] = (p * distance.min(axis=2)).sum(axis=1) / (R0 * p.sum(axis=1))
    return tau


def energy_correlations(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """e2 and e3 (beta = 1) per jet, with momentum fractions z_i = pT_i / sum pT.

    With M_ij = sqrt(z_i z_j) R_ij, e2 = z^T R z / 2 and e3 = trace(M^3) / 6: the diagonal of
    R is zero, so only triples of distinct candidates contribute, each six times."""
    e2, e3 = np.zeros(len(pt)), np.zeros(len(pt))
    for start in range(0, len(pt), _BATCH):
        rows = slice(start, start + _BATCH)
        width = max(int((pt[rows] > 0).sum(axis=1).max(initial=0)), 1)  # pT-ordered, zero-padded
        p, h, f = pt[rows, :width], eta[rows, :width], phi[rows, :width]
        z = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
        r = _delta_r(h[:, :, None], f[:, :, None], h[:, None, :], f[:, None, :])
        root = np.sqrt(z)
        m = root[:, :, None] * r * root[:, None, :]
        e2[rows] = np.einsum("ji,jik,jk->j", z, r, z) / 2
        # trace(M^3) = sum_ik (M @ M)_ik M_ki, with M symmetric: one batched matrix product.
        e3[rows] = ((m @ m) * m).sum(axis=(1, 2)) / 6
    return e2, e3


def observables(candidates: np.ndarray) -> dict[str, np.ndarray]:
    """Every observable of `NAMES` for (jets, N, 3) candidate words (pT-ordered)."""
    pt, eta, phi = from_words(candidates)
    tau = {f"tau{n}": n_subjettiness(pt, eta, phi, n) for n in N_SUBJETTINESS}
    e2, e3 = energy_correlations(pt, eta, phi)
    safe_e2 = np.where(e2 > 0, e2, 1.0)
    return {
        **tau,
        "tau21": np.divide(tau["tau2"], tau["tau1"], out=np.zeros(len(pt)), where=tau["tau1"] > 0),
        "tau32": np.divide(tau["tau3"], tau["tau2"], out=np.zeros(len(pt)), where=tau["tau2"] > 0),
        "e2": e2,
        "e3": e3,
        "c2": np.where(e2 > 0, e3 / safe_e2**2, 0.0),
        "d2": np.where(e2 > 0, e3 / safe_e2**3, 0.0),
    }
