"""The public hls4ml LHC-jet HDF5 layout: names, shapes, and checks on read.

Files hold `jetConstituentList` (N, 150, 16) pT-ordered and zero-padded, `jets` (N, J) with
jet observables and one-hot labels in the columns named j_g, j_q, j_w, j_z, j_t, and the
feature names as byte strings in `particleFeatureNames` and `jetFeatureNames`.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from trigger.config import CLASS_NAMES
from trigger.errors import TriggerError
from trigger.io import require_file

MAX_CONSTITUENTS = 150

# The 16 standard particle features of the published dataset, in its order and spelling.
PARTICLE_FEATURES = (
    "j1_px", "j1_py", "j1_pz", "j1_e", "j1_erel", "j1_pt", "j1_ptrel", "j1_eta",
    "j1_etarel", "j1_etarot", "j1_phi", "j1_phirel", "j1_phirot", "j1_deltaR",
    "j1_costheta", "j1_costhetarel",
)  # fmt: skip

# Observables first, labels last: `jets[:, -6:-1]` are the one-hot labels, as published.
JET_OBSERVABLES = ("j_pt", "j_eta", "j_phi", "j_mass", "j_mass_mmdt", "j_multiplicity")
LABEL_COLUMNS = ("j_g", "j_q", "j_w", "j_z", "j_t", "j_undef")
JET_FEATURES = JET_OBSERVABLES + LABEL_COLUMNS

CONSTITUENTS_KEY = "jetConstituentList"
JETS_KEY = "jets"
PARTICLE_NAMES_KEY = "particleFeatureNames"
JET_NAMES_KEY = "jetFeatureNames"


def short_name(name: str) -> str:
    """'j1_ptrel' -> 'ptrel', 'j_mass' -> 'mass': how recipes and reports name features."""
    return name.split("_", 1)[1].lower() if name.startswith(("j1_", "j_")) else name.lower()


def decode_names(dataset: h5py.Dataset) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in dataset[()]]


def write_jets_file(
    path: str | Path, constituents: np.ndarray, jets: np.ndarray, attrs: dict | None = None
) -> None:
    """Write arrays in the published layout; deterministic bytes for identical inputs."""
    with h5py.File(path, "w", track_order=True) as f:
        # No timestamps, fixed chunking and compression: the same arrays give the same bytes.
        options = {"track_times": False}
        f.create_dataset(CONSTITUENTS_KEY, data=constituents.astype(np.float32), **options)
        f.create_dataset(JETS_KEY, data=jets.astype(np.float32), **options)
        f.create_dataset(PARTICLE_NAMES_KEY, data=np.array(PARTICLE_FEATURES, dtype="S"), **options)
        f.create_dataset(JET_NAMES_KEY, data=np.array(JET_FEATURES, dtype="S"), **options)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value


class OpenedJets:
    """Validated handles into one layout file; raises a one-line error for anything off."""

    def __init__(self, path: str | Path, *, labelled: bool = True) -> None:
        """`labelled=False` opens a file without the label columns j_g..j_t (the jets a trigger
        sees), for readers of the L1 words only."""
        self.path = require_file(path)
        try:
            self.file = h5py.File(self.path, "r")
        except BlockingIOError:
            msg = f"{self.path}: locked by another process, which is writing it (wait for it)"
            raise TriggerError(msg) from None
        except OSError:
            msg = f"{self.path}: not an HDF5 file"
            raise TriggerError(msg) from None
        for key in (CONSTITUENTS_KEY, JETS_KEY, PARTICLE_NAMES_KEY, JET_NAMES_KEY):
            if key not in self.file:
                self.file.close()
                msg = f"{self.path}: missing HDF5 key '{key}' (not the hls4ml LHC-jet layout)"
                raise TriggerError(msg)
        self.constituents = self.file[CONSTITUENTS_KEY]
        self.jets = self.file[JETS_KEY]
        self.particle_names = [short_name(n) for n in decode_names(self.file[PARTICLE_NAMES_KEY])]
        self.jet_names = [short_name(n) for n in decode_names(self.file[JET_NAMES_KEY])]
        self._check_shapes(labelled)

    def _check_shapes(self, labelled: bool) -> None:
        c, j = self.constituents.shape, self.jets.shape
        problems = []
        if len(c) != 3 or c[2] != len(self.particle_names):
            problems.append(
                f"'{CONSTITUENTS_KEY}' has shape {c}, expected (N, particles, "
                f"{len(self.particle_names)}) to match '{PARTICLE_NAMES_KEY}'"
            )
        elif len(j) != 2 or j[0] != c[0] or j[1] != len(self.jet_names):
            problems.append(f"'{JETS_KEY}' has shape {j}, expected ({c[0]}, {len(self.jet_names)})")
        wanted = ("g", "q", "w", "z", "t") if labelled else ()
        missing = [n for n in wanted if n not in self.jet_names]
        if missing:
            problems.append(f"'{JET_NAMES_KEY}' lacks label columns {['j_' + m for m in missing]}")
        if problems:
            self.file.close()
            msg = f"{self.path}: {problems[0]}"
            raise TriggerError(msg)

    def __len__(self) -> int:
        return self.constituents.shape[0]

    def check_finite(self, chunk: int = 20_000) -> None:
        """Scan every stored number (chunk by chunk, so large files fit in memory)."""
        for name, dataset in ((CONSTITUENTS_KEY, self.constituents), (JETS_KEY, self.jets)):
            for start in range(0, len(self), chunk):
                block = dataset[start : start + chunk]
                if not np.isfinite(block).all():
                    bad = start + int(
                        np.flatnonzero(~np.isfinite(block).reshape(len(block), -1).all(1))[0]
                    )
                    msg = f"{self.path}: '{name}' holds NaN or infinite values (first at jet {bad})"
                    raise TriggerError(msg)

    def particle_index(self, feature: str) -> int:
        try:
            return self.particle_names.index(feature.lower())
        except ValueError:
            msg = (
                f"{self.path}: unknown particle feature '{feature}' "
                f"(available: {', '.join(self.particle_names)})"
            )
            raise TriggerError(msg) from None

    def label_columns(self) -> list[int]:
        return [self.jet_names.index(c.lower()) for c in CLASS_NAMES]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> OpenedJets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
