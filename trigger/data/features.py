"""Constituent four-momenta -> the 16 standard particle features and the jet observables."""

from __future__ import annotations

import numpy as np

from trigger.data.layout import JET_FEATURES, MAX_CONSTITUENTS, PARTICLE_FEATURES

SOFT_DROP = {"beta": 0.0, "symmetry_cut": 0.1, "R0": 0.8}


def _wrap(phi: np.ndarray) -> np.ndarray:
    return (phi + np.pi) % (2 * np.pi) - np.pi


def _padded(four_momenta: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """pT-ordered (jets, 150, 4) array and the real-particle mask; extra particles dropped."""
    p4 = np.zeros((len(four_momenta), MAX_CONSTITUENTS, 4))
    for i, particles in enumerate(four_momenta):
        order = np.argsort(-np.hypot(particles[:, 0], particles[:, 1]), kind="stable")
        kept = particles[order][:MAX_CONSTITUENTS]
        p4[i, : len(kept)] = kept
    return p4, p4[..., 3] > 0


def soft_drop_mass(four_momenta: list[np.ndarray]) -> np.ndarray:
    """Soft-drop (mMDT: beta=0, z_cut=0.1) mass, C/A reclustering with FastJet, all jets at once."""
    if not four_momenta:
        return np.zeros(0)
    import awkward as ak
    import fastjet

    counts = [len(p) for p in four_momenta]
    flat = np.concatenate(four_momenta)
    particles = ak.unflatten(
        ak.zip({"px": flat[:, 0], "py": flat[:, 1], "pz": flat[:, 2], "E": flat[:, 3]}), counts
    )
    sequence = fastjet.ClusterSequence(
        particles, fastjet.JetDefinition(fastjet.cambridge_algorithm, 10.0)
    )
    groomed = sequence.exclusive_jets_softdrop_grooming(njets=1, **SOFT_DROP)
    return np.asarray(groomed.msoftdrop, dtype=np.float64)


def jet_arrays(four_momenta: list[np.ndarray], label: int) -> tuple[np.ndarray, np.ndarray]:
    """Layout arrays for jets given their constituents' (px, py, pz, E) in GeV."""
    p4, real = _padded(four_momenta)
    jet = np.stack([p.sum(axis=0) for p in four_momenta]) if four_momenta else np.zeros((0, 4))
    jet_pt = np.hypot(jet[:, 0], jet[:, 1])
    jet_eta = np.arcsinh(jet[:, 2] / jet_pt)
    jet_phi = np.arctan2(jet[:, 1], jet[:, 0])
    jet_p = np.linalg.norm(jet[:, :3], axis=1)
    jet_mass = np.sqrt(np.maximum(jet[:, 3] ** 2 - jet_p**2, 0.0))

    px, py, pz, e = (p4[..., k] for k in range(4))
    pt = np.hypot(px, py)
    safe_pt = np.where(real, pt, 1.0)
    p = np.where(real, np.sqrt(px**2 + py**2 + pz**2), 1.0)
    eta = np.where(real, np.arcsinh(pz / safe_pt), 0.0)
    phi = np.where(real, np.arctan2(py, px), 0.0)
    etarel = np.where(real, eta - jet_eta[:, None], 0.0)
    phirel = np.where(real, _wrap(phi - jet_phi[:, None]), 0.0)
    etarot, phirot = principal_axis_frame(etarel, phirel, pt)
    cos_rel = (px * jet[:, None, 0] + py * jet[:, None, 1] + pz * jet[:, None, 2]) / (
        p * jet_p[:, None]
    )
    columns = {
        "j1_px": px, "j1_py": py, "j1_pz": pz, "j1_e": e,
        "j1_erel": e / jet[:, None, 3], "j1_pt": pt, "j1_ptrel": pt / jet_pt[:, None],
        "j1_eta": eta, "j1_etarel": etarel, "j1_etarot": etarot,
        "j1_phi": phi, "j1_phirel": phirel, "j1_phirot": phirot,
        "j1_deltaR": np.hypot(etarel, phirel),
        "j1_costheta": pz / p, "j1_costhetarel": cos_rel,
    }  # fmt: skip
    constituents = np.stack([np.where(real, columns[n], 0.0) for n in PARTICLE_FEATURES], -1)

    observables = {
        "j_pt": jet_pt, "j_eta": jet_eta, "j_phi": jet_phi, "j_mass": jet_mass,
        "j_mass_mmdt": soft_drop_mass(four_momenta),
        "j_multiplicity": np.array([len(p) for p in four_momenta], dtype=np.float64),
    }  # fmt: skip
    jets = np.zeros((len(four_momenta), len(JET_FEATURES)))
    for name, values in observables.items():
        jets[:, JET_FEATURES.index(name)] = values
    jets[:, JET_FEATURES.index(("j_g", "j_q", "j_w", "j_z", "j_t")[label])] = 1.0
    return constituents.astype(np.float32), jets.astype(np.float32)


def principal_axis_frame(
    etarel: np.ndarray, phirel: np.ndarray, pt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (etarel, phirel) so the pT-weighted principal axis of each jet lies along eta."""
    w = pt / np.maximum(pt.sum(axis=1, keepdims=True), 1e-12)
    c_ee = (w * etarel**2).sum(axis=1)
    c_pp = (w * phirel**2).sum(axis=1)
    c_ep = (w * etarel * phirel).sum(axis=1)
    angle = 0.5 * np.arctan2(2 * c_ep, c_ee - c_pp)
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return cos * etarel + sin * phirel, -sin * etarel + cos * phirel
