"""What the firmware's N-candidate view does to the physics: the soft-drop mass of true top jets
from their leading N candidates against that from all of them.

A top jet's three prongs spread over many candidates; the firmware receives only the leading N
in pT. Reclustering (C/A, soft drop beta = 0, z_cut = 0.1, as the data files' j_mass_mmdt) the
leading N candidates' four-momenta shows the mass a tagger fed N candidates can at best see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trigger.config import CLASS_NAMES
from trigger.data.features import soft_drop_mass
from trigger.data.layout import OpenedJets

FOUR_MOMENTUM = ("px", "py", "pz", "e")


def _four_momenta(path: Path, target: int, max_jets: int) -> list[np.ndarray]:
    """(candidates, 4) per true-`target` jet, the candidates present, in the file's pT order."""
    with OpenedJets(path) as f:
        labels = np.asarray(f.jets[()])[:, f.label_columns()].argmax(axis=1)
        chosen = np.flatnonzero(labels == target)[:max_jets]
        columns = [f.particle_index(name) for name in FOUR_MOMENTUM]
        particles = np.asarray(f.constituents[chosen.tolist()])[..., columns] if len(chosen) else []
    # A candidate is there when it has transverse momentum (files without four-momenta hold
    # zeros: no jet is kept from them).
    present = [jet[np.hypot(jet[:, 0], jet[:, 1]) > 0].astype(np.float64) for jet in particles]
    return [jet for jet in present if len(jet)]


def candidate_view(
    path: str | Path, n_candidates: int, target: str = "t", max_jets: int = 2000
) -> dict:
    """Soft-drop mass of up to `max_jets` true-`target` jets of `path`: all candidates against
    the leading `n_candidates`; medians and the median of the per-jet difference [GeV]."""
    jets = _four_momenta(Path(path), CLASS_NAMES.index(target), max_jets)
    if not jets:
        return {"class": target, "jets": 0, "n_candidates": n_candidates}
    everything = soft_drop_mass(jets)
    leading = soft_drop_mass([jet[:n_candidates] for jet in jets])
    return {
        "data": str(path),
        "class": target,
        "jets": len(jets),
        "n_candidates": n_candidates,
        "jets_with_more_candidates": int(sum(len(jet) > n_candidates for jet in jets)),
        "median_all": float(np.median(everything)),
        "median_leading": float(np.median(leading)),
        "median_shift": float(np.median(leading - everything)),
        "all": everything.tolist(),
        "leading": leading.tolist(),
    }
