"""Shared test fixtures: small hand-made files in the published hls4ml layout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Deterministic, quiet TensorFlow on 2 cores; set before any test imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from trigger.data.features import principal_axis_frame
from trigger.data.layout import JET_FEATURES, PARTICLE_FEATURES, write_jets_file


def synthetic_jets(
    jets_per_class: int, seed: int = 0, max_particles: int = 150
) -> tuple[np.ndarray, np.ndarray]:
    """Learnable toy jets: the class sets multiplicity and angular spread of the constituents.

    Not physics: a stand-in with the real layout, for tests that must run in seconds.
    """
    rng = np.random.default_rng(seed)
    n_classes = 5
    n = jets_per_class * n_classes
    labels = np.repeat(np.arange(n_classes), jets_per_class)
    rng.shuffle(labels)
    constituents = np.zeros((n, max_particles, len(PARTICLE_FEATURES)), np.float32)
    jets = np.zeros((n, len(JET_FEATURES)), np.float32)
    col = {name: i for i, name in enumerate(PARTICLE_FEATURES)}
    jcol = {name: i for i, name in enumerate(JET_FEATURES)}
    for i, label in enumerate(labels):
        multiplicity = int(np.clip(rng.normal(20 + 8 * label, 5), 3, max_particles))
        pt = np.sort(rng.exponential(1.0 + label, multiplicity))[::-1] + 0.1
        spread = 0.05 + 0.04 * label
        etarel = rng.normal(0, spread, multiplicity)
        phirel = rng.normal(0, spread, multiplicity)
        jet_pt = rng.uniform(800, 1200)
        jet_eta, jet_phi = rng.uniform(-2, 2), rng.uniform(-np.pi, np.pi)
        ptrel = pt / pt.sum()
        constituents[i, :multiplicity, col["j1_eta"]] = jet_eta + etarel
        phi = (jet_phi + phirel + np.pi) % (2 * np.pi) - np.pi
        constituents[i, :multiplicity, col["j1_phi"]] = phi
        constituents[i, :multiplicity, col["j1_pt"]] = ptrel * jet_pt
        constituents[i, :multiplicity, col["j1_ptrel"]] = ptrel
        constituents[i, :multiplicity, col["j1_etarel"]] = etarel
        constituents[i, :multiplicity, col["j1_phirel"]] = phirel
        etarot, phirot = principal_axis_frame(etarel[None], phirel[None], pt[None])
        constituents[i, :multiplicity, col["j1_etarot"]] = etarot[0]
        constituents[i, :multiplicity, col["j1_phirot"]] = phirot[0]
        constituents[i, :multiplicity, col["j1_deltaR"]] = np.hypot(etarel, phirel)
        constituents[i, :multiplicity, col["j1_e"]] = ptrel * jet_pt * 1.2
        constituents[i, :multiplicity, col["j1_erel"]] = ptrel
        jets[i, jcol["j_pt"]] = jet_pt
        jets[i, jcol["j_eta"]] = jet_eta
        jets[i, jcol["j_phi"]] = jet_phi
        jets[i, jcol["j_mass"]] = 20 + 40 * label + rng.normal(0, 5)
        jets[i, jcol["j_mass_mmdt"]] = 10 + 40 * label + rng.normal(0, 5)
        jets[i, jcol["j_multiplicity"]] = multiplicity
        jets[i, jcol[("j_g", "j_q", "j_w", "j_z", "j_t")[label]]] = 1.0
    return constituents, jets


def write_synthetic_file(path: Path, jets_per_class: int, seed: int = 0) -> Path:
    write_jets_file(path, *synthetic_jets(jets_per_class, seed))
    return path


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-class toy file in the published layout, 300 jets per class."""
    return write_synthetic_file(tmp_path_factory.mktemp("data") / "synthetic.h5", 300)
