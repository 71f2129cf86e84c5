"""Loader used by every later stage: layout files -> fixed-size, normalised, split arrays.

The input contract (N constituents, feature list, per-feature centre/scale, clip) is saved as
`preprocess.json` next to each model, so the firmware input is defined by the artifact alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from trigger.config import CLASS_NAMES, DataConfig
from trigger.data.layout import OpenedJets
from trigger.errors import TriggerError

OBSERVABLES = ("pt", "eta", "mass", "mass_mmdt", "multiplicity")
_READ_CHUNK = 20_000


@dataclass
class JetSample:
    """Jets as the models see them, with what validation needs beside them."""

    x: np.ndarray  # (jets, n_constituents, features) float32
    y: np.ndarray  # (jets, 5) one-hot float32
    weight: np.ndarray  # (jets,) float32, kinematic flattening weight (1 when off)
    observables: dict[str, np.ndarray]  # each (jets,), from the file's jet columns

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> JetSample:
        return JetSample(
            self.x[index],
            self.y[index],
            self.weight[index],
            {k: v[index] for k, v in self.observables.items()},
        )

    @property
    def labels(self) -> np.ndarray:
        return self.y.argmax(axis=1)


@dataclass(frozen=True)
class Preprocessing:
    """x_norm = clip((x - center) * scale, -clip, clip); padded constituents stay exactly 0."""

    n_constituents: int
    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    clip: float

    def apply(self, raw: np.ndarray) -> np.ndarray:
        raw = raw[:, : self.n_constituents, :]
        padded = np.all(raw == 0, axis=-1, keepdims=True)
        x = (raw - np.asarray(self.center, np.float32)) * np.asarray(self.scale, np.float32)
        x = np.clip(x, -self.clip, self.clip)
        return np.where(padded, 0.0, x).astype(np.float32)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Preprocessing:
        fields = json.loads(Path(path).read_text())
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


@dataclass
class Dataset:
    train: JetSample
    validation: JetSample
    test: JetSample
    preprocessing: Preprocessing


def _read_file(path: str | Path, n_constituents: int, features: Sequence[str], limit: int | None):
    with OpenedJets(path) as f:
        columns = [f.particle_index(name) for name in features]
        n = len(f) if limit is None else min(limit, len(f))
        if f.constituents.shape[1] < n_constituents:
            msg = (
                f"{path}: holds {f.constituents.shape[1]} constituents per jet, "
                f"recipe asks for {n_constituents}"
            )
            raise TriggerError(msg)
        chunks = [
            f.constituents[start : start + _READ_CHUNK, :n_constituents, :][..., columns]
            for start in range(0, n, _READ_CHUNK)
        ]
        x = np.concatenate(chunks) if chunks else np.zeros((0, n_constituents, len(columns)))
        jets = f.jets[:n]
        y = jets[:, f.label_columns()]
        observables = {
            name: jets[:, f.jet_names.index(name)].astype(np.float32)
            for name in OBSERVABLES
            if name in f.jet_names
        }
    _check_values(path, x, y, observables)
    return x.astype(np.float32), y.astype(np.float32), observables


def _check_values(
    path: str | Path, x: np.ndarray, y: np.ndarray, observables: dict[str, np.ndarray]
) -> None:
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=(1, 2)).sum())
        msg = f"{path}: {bad} jets have NaN or infinite constituent features"
        raise TriggerError(msg)
    for name, values in observables.items():
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            msg = f"{path}: {bad} jets have NaN or infinite j_{name}"
            raise TriggerError(msg)
    if not np.isfinite(y).all() or not np.all(y.sum(axis=1) == 1) or not np.isin(y, (0, 1)).all():
        msg = f"{path}: labels j_g..j_t are not one-hot for every jet"
        raise TriggerError(msg)


def read_jets(
    paths: str | Path | Sequence[str | Path],
    n_constituents: int,
    features: Sequence[str],
    limit: int | None = None,
) -> JetSample:
    """Read raw (unnormalised) constituents, labels and observables from one or more files."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    parts = [_read_file(p, n_constituents, features, limit) for p in paths]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    keys = set.intersection(*(set(p[2]) for p in parts))
    observables = {k: np.concatenate([p[2][k] for p in parts]) for k in sorted(keys)}
    if limit is not None:
        x, y, observables = x[:limit], y[:limit], {k: v[:limit] for k, v in observables.items()}
    return JetSample(x, y, np.ones(len(y), np.float32), observables)


def flattening_weights(sample: JetSample, bins: int = 10) -> np.ndarray:
    """Per-jet weights giving every class the same (pT, |eta|) spectrum: that of all jets.

    Bins are quantiles of the pooled sample, so every bin is populated; weights are capped at
    10 and normalised to mean 1 per class.
    """
    if "pt" not in sample.observables or "eta" not in sample.observables:
        msg = "reweight 'pt_eta' needs the jet columns j_pt and j_eta"
        raise TriggerError(msg)
    pt, abseta = sample.observables["pt"], np.abs(sample.observables["eta"])
    pt_edges = np.unique(np.quantile(pt, np.linspace(0, 1, bins + 1)))
    eta_edges = np.unique(np.quantile(abseta, np.linspace(0, 1, bins // 2 + 1)))
    pt_bin = np.clip(np.searchsorted(pt_edges, pt, side="right") - 1, 0, len(pt_edges) - 2)
    eta_bin = np.clip(np.searchsorted(eta_edges, abseta, side="right") - 1, 0, len(eta_edges) - 2)
    cell = pt_bin * (len(eta_edges) - 1) + eta_bin
    n_cells = (len(pt_edges) - 1) * (len(eta_edges) - 1)
    reference = np.bincount(cell, minlength=n_cells) / len(cell)
    weights = np.ones(len(cell), np.float64)
    labels = sample.labels
    for c in range(len(CLASS_NAMES)):
        members = labels == c
        if not members.any():
            continue
        density = np.bincount(cell[members], minlength=n_cells) / members.sum()
        w = np.minimum(reference[cell[members]] / density[cell[members]], 10.0)
        weights[members] = w / w.mean()
    return weights.astype(np.float32)


def fit_preprocessing(train: JetSample, features: Sequence[str], clip: float) -> Preprocessing:
    """Centre and scale each feature by its mean and spread over real (non-padded) particles."""
    real = ~np.all(train.x == 0, axis=-1)
    values = train.x[real]
    if len(values) == 0:
        msg = "the training split holds no constituents"
        raise TriggerError(msg)
    std = values.std(axis=0)
    scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 1.0)
    return Preprocessing(
        n_constituents=train.x.shape[1],
        features=tuple(features),
        center=tuple(float(v) for v in values.mean(axis=0)),
        scale=tuple(float(v) for v in scale),
        clip=clip,
    )


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Deterministic shuffled train/validation/test index arrays for `n` jets."""
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum(fractions)[:-1] * n).astype(int)
    return [np.sort(part) for part in np.split(order, bounds)]


def _raw_splits(
    config: DataConfig, path: str | Path | Sequence[str | Path] | None
) -> list[JetSample]:
    source = path or config.path
    raw = read_jets(source, config.n_constituents, config.features, config.max_jets)
    splits = split_indices(len(raw), config.split, config.split_seed)
    if min(len(s) for s in splits) == 0:
        msg = (
            f"{_name(source)}: {len(raw)} jets are too few for the split {list(config.split)} "
            "(train, validation and test each need at least one)"
        )
        raise TriggerError(msg)
    if config.reweight == "pt_eta":
        raw.weight = flattening_weights(raw)
    return [raw.take(i) for i in splits]


def _name(path: str | Path | Sequence[str | Path]) -> str:
    return str(path) if isinstance(path, str | Path) else ", ".join(map(str, path))


def _require_every_class(train: JetSample, path: str | Path | Sequence[str | Path]) -> None:
    missing = [c for i, c in enumerate(CLASS_NAMES) if not np.any(train.labels == i)]
    if missing:
        msg = (
            f"{_name(path)}: the training split holds no {', '.join(missing)} jets: "
            "a classifier needs every class"
        )
        raise TriggerError(msg)


def load_dataset(
    config: DataConfig, path: str | Path | Sequence[str | Path] | None = None
) -> Dataset:
    """Read, weight, split and normalise; the preprocessing is fitted on the training split.

    Data that cannot train a classifier (an empty split, a class absent from the training
    split) is refused here, before any training starts.
    """
    train, validation, test = _raw_splits(config, path)
    _require_every_class(train, path or config.path)
    preprocessing = fit_preprocessing(train, config.features, config.clip)
    for sample in (train, validation, test):
        sample.x = preprocessing.apply(sample.x)
    return Dataset(train, validation, test, preprocessing)


def load_test_split(
    config: DataConfig,
    preprocessing: Preprocessing,
    path: str | Path | Sequence[str | Path] | None = None,
) -> JetSample:
    """The test split, normalised with a model's saved input contract (not refitted)."""
    config = config.model_copy(
        update={"n_constituents": preprocessing.n_constituents, "features": preprocessing.features}
    )
    test = _raw_splits(config, path)[2]
    test.x = preprocessing.apply(test.x)
    return test
