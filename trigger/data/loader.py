"""Loader used by every later stage: layout files -> L1 words -> the input stage's features.

Every file, generated or published, is read as the firmware receives it: its candidates and
jets rounded to Level-1 words (`trigger.inputs`). The input stage fitted on the training split
(`input_stage.json` next to each model) turns the words into the features every model trains
on, exactly as the firmware computes them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from trigger.config import CLASS_NAMES, DataConfig, QuantizerConfig
from trigger.data.layout import OpenedJets
from trigger.errors import TriggerError
from trigger.inputs import CANDIDATE_WORDS, JET_WORDS, InputStage, fit_input_stage, to_words

OBSERVABLES = ("pt", "eta", "mass", "mass_mmdt", "multiplicity")
_READ_CHUNK = 20_000


@dataclass
class JetSample:
    """Jets as the firmware receives them (L1 words) and as the models see them (features)."""

    candidates: np.ndarray  # (jets, n_constituents, 3) int64 words: pT, eta, phi
    jet: np.ndarray  # (jets, 4) int64 words: pT, eta, phi, candidate count
    y: np.ndarray  # (jets, 5) one-hot float32
    weight: np.ndarray  # (jets,) float32, kinematic flattening weight (1 when off)
    observables: dict[str, np.ndarray]  # each (jets,), from the file's jet columns
    x: np.ndarray | None = None  # (jets, n_constituents, features) float32, the input stage's

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> JetSample:
        return JetSample(
            self.candidates[index],
            self.jet[index],
            self.y[index],
            self.weight[index],
            {k: v[index] for k, v in self.observables.items()},
            None if self.x is None else self.x[index],
        )

    @property
    def labels(self) -> np.ndarray:
        return self.y.argmax(axis=1)

    @property
    def words(self) -> np.ndarray:
        """(jets, 3 N + 4) int64: each jet's words as the firmware's port takes them."""
        flat = self.candidates.reshape(len(self), -1)
        return np.concatenate([flat, self.jet], axis=1)


@dataclass
class Dataset:
    train: JetSample
    validation: JetSample
    test: JetSample
    input_stage: InputStage


def _column(f: OpenedJets, names: list[str], name: str, what: str) -> int:
    if name not in names:
        msg = f"{f.path}: no {what} column '{name}', which the L1 words are made from"
        raise TriggerError(msg)
    return names.index(name)


def _words(f: OpenedJets, start: int, stop: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate and jet words of jets [start, stop): (jets, N, 3) and (jets, 4)."""
    rows = _port_rows(f, start, stop, n)
    return rows[:, : 3 * n].reshape(len(rows), n, 3), rows[:, 3 * n :]


def _port_rows(f: OpenedJets, start: int, stop: int, n: int) -> np.ndarray:
    """(jets, 3 N + 4) L1 words of jets [start, stop): the file's values rounded to words.

    Only what the words are made of is read: pT, eta and phi of the leading N candidates, and
    the jet's pT, eta, phi and candidate count. Without a jet phi column (the published set has
    none), phi is taken relative to the jet (`phirel`, jet phi 0): the input stage only ever
    uses the difference.
    """
    relative = "phi" not in f.jet_names
    names = ("pt", "eta", "phirel" if relative else "phi")
    features = [f.particle_index(name) for name in names]
    read = sorted(set(features))  # h5py reads a list of columns in increasing order
    particles = f.constituents[start:stop, :n, read]
    if not np.isfinite(particles).all():
        bad = int((~np.isfinite(particles)).any(axis=(1, 2)).sum())
        msg = f"{f.path}: {bad} jets have NaN or infinite constituent features"
        raise TriggerError(msg)
    rows = np.empty((stop - start, 3 * n + 4), np.int64)
    candidates = rows[:, : 3 * n].reshape(stop - start, n, 3)
    for k, (feature, word) in enumerate(zip(features, CANDIDATE_WORDS, strict=True)):
        candidates[..., k] = to_words(particles[..., read.index(feature)], word)
    candidates[candidates[..., 0] == 0] = 0  # below one LSB of pT: no candidate
    jets = f.jets[start:stop]
    columns = [_column(f, f.jet_names, c, "jet") for c in ("pt", "eta", "multiplicity")]
    jet_phi = np.zeros(len(jets)) if relative else jets[:, f.jet_names.index("phi")]
    values = (jets[:, columns[0]], jets[:, columns[1]], jet_phi, jets[:, columns[2]])
    for k, (name, column, word) in enumerate(
        zip(("pt", "eta", "phi", "multiplicity"), values, JET_WORDS, strict=True)
    ):
        if not np.isfinite(column).all():
            bad = int((~np.isfinite(column)).sum())
            msg = f"{f.path}: {bad} jets have NaN or infinite j_{name}"
            raise TriggerError(msg)
        rows[:, 3 * n + k] = to_words(column, word)
    return rows


def check_constituents(path: str | Path, f: OpenedJets, n_constituents: int, who: str) -> None:
    """A one-line error when the file holds fewer candidates per jet than `who` takes."""
    if f.constituents.shape[1] < n_constituents:
        msg = (
            f"{path}: holds {f.constituents.shape[1]} constituents per jet, "
            f"{who} takes {n_constituents}"
        )
        raise TriggerError(msg)


# A file system stores a never-written stretch of a file as a hole (no data), in blocks or
# records of up to 1 MiB: a dataset whose last MiB is all hole was never written to its end.
# Its last 128 KiB are left out, as a neighbour's data may share their block.
_TAIL_BYTES, _EDGE_BYTES = 1 << 20, 1 << 17


def check_stored(path: str | Path, dataset: h5py.Dataset) -> None:
    """A one-line error when `dataset` declares more jets than the file stores: an unfinished
    or sparse file (HDF5 reads rows never written as zeros, so they would pass as jets)."""
    rows = dataset.shape[0]
    stored = _stored_rows(path, dataset)
    if stored < rows:
        msg = (
            f"{path}: '{dataset.name.lstrip('/')}' declares {rows:,} jets but holds data for "
            f"at most {stored:,} (an unfinished or sparse file)"
        )
        raise TriggerError(msg)


def _stored_rows(path: str | Path, dataset: h5py.Dataset) -> int:
    """How many leading rows of `dataset` are backed by stored data (all of them when that
    cannot be told: virtual or external datasets)."""
    rows = dataset.shape[0]
    if rows == 0 or dataset.size == 0 or dataset.is_virtual or dataset.external:
        return rows
    if dataset.chunks is not None:
        return _rows_in_chunks(dataset)
    offset, size = dataset.id.get_offset(), dataset.id.get_storage_size()
    if offset is None or size == 0:
        return 0  # contiguous storage is allocated on the first write: never written
    return _rows_on_disk(path, offset, size, rows)


def _rows_in_chunks(dataset: h5py.Dataset) -> int:
    """Rows covered by the dataset's allocated chunks (HDF5 allocates a chunk when it is first
    written)."""
    step, rows = dataset.chunks[0], dataset.shape[0]
    spanned = np.prod([-(-n // c) for n, c in zip(dataset.shape, dataset.chunks, strict=True)])
    allocated = dataset.id.get_num_chunks()
    if allocated == spanned:
        return rows
    covered = {dataset.id.get_chunk_info(i).chunk_offset[0] for i in range(allocated)}
    return min(len(covered) * step, rows)


def _rows_on_disk(path: str | Path, offset: int, size: int, rows: int) -> int:
    """Leading rows of a contiguous dataset at [offset, offset + size) that the file system
    stores: rows past its last stored byte were never written (a hole of a sparse file)."""
    seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
    if seek_data is None or seek_hole is None or size <= 2 * _TAIL_BYTES:
        return rows
    limit = offset + size - _EDGE_BYTES
    with open(path, "rb") as handle:
        fd = handle.fileno()
        if _next_data(fd, offset + size - _TAIL_BYTES, seek_data) < limit:
            return rows
        last = offset
        position = _next_data(fd, offset, seek_data)
        while position < limit:
            last = os.lseek(fd, position, seek_hole)
            position = _next_data(fd, last, seek_data)
    return min(-(-(last - offset) // (size // rows)), rows)


def _next_data(fd: int, position: int, seek_data: int) -> int:
    """The first stored byte at or after `position` (end of file when none)."""
    try:
        return os.lseek(fd, position, seek_data)
    except OSError:  # ENXIO: no data after `position`
        return os.fstat(fd).st_size


@contextlib.contextmanager
def _opened_for(
    path: str | Path, n_constituents: int, who: str, labelled: bool
) -> Iterator[OpenedJets]:
    """The file, once it is known to give `who` its candidates and to store every jet it
    declares."""
    with OpenedJets(path, labelled=labelled) as f:
        check_constituents(path, f, n_constituents, who)
        for dataset in (f.constituents, f.jets):
            check_stored(path, dataset)
        yield f


def readable_jets(
    path: str | Path, n_constituents: int, who: str = "the firmware", *, labelled: bool = True
) -> int:
    """How many jets the file holds, once it is known to give `who` its candidates (and, with
    `labelled`, its labels)."""
    with _opened_for(path, n_constituents, who, labelled) as f:
        return len(f)


def word_chunks(
    path: str | Path, n_constituents: int, chunk_jets: int, who: str = "the firmware"
) -> Iterator[np.ndarray]:
    """Every jet of a file as (jets, 3 N + 4) L1 words, `chunk_jets` jets at a time: memory
    bounded whatever the file's size. Labels are not needed. `who` names the reader in
    errors."""
    with _opened_for(path, n_constituents, who, labelled=False) as f:
        for start in range(0, len(f), chunk_jets):
            yield _port_rows(f, start, min(start + chunk_jets, len(f)), n_constituents)


def observable_chunks(
    path: str | Path, n_constituents: int, chunk_jets: int, who: str = "the firmware"
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """`word_chunks` with each chunk's jet observables (those of `OBSERVABLES` the file has)."""
    with _opened_for(path, n_constituents, who, labelled=False) as f:
        for start in range(0, len(f), chunk_jets):
            stop = min(start + chunk_jets, len(f))
            words = _port_rows(f, start, stop, n_constituents)
            observables = _observables(f, f.jets[start:stop])
            _check_values(path, None, observables)
            yield words, observables


def _observables(f: OpenedJets, jets: np.ndarray) -> dict[str, np.ndarray]:
    return {
        name: jets[:, f.jet_names.index(name)].astype(np.float32)
        for name in OBSERVABLES
        if name in f.jet_names
    }


def _read_file(path: str | Path, n_constituents: int, limit: int | None):
    with OpenedJets(path) as f:
        n = len(f) if limit is None else min(limit, len(f))
        check_constituents(path, f, n_constituents, "the recipe")
        _check_finite(path, f, 0, n, n_constituents)
        parts = [
            _words(f, start, min(start + _READ_CHUNK, n), n_constituents)
            for start in range(0, n, _READ_CHUNK)
        ]
        empty = (np.zeros((0, n_constituents, 3), np.int64), np.zeros((0, 4), np.int64))
        candidates, jet = (np.concatenate(p) for p in zip(*parts, strict=True)) if parts else empty
        jets = f.jets[:n]
        y = jets[:, f.label_columns()]
        observables = _observables(f, jets)
    _check_values(path, y, observables)
    return candidates, jet, y.astype(np.float32), observables


def _check_finite(
    path: str | Path, f: OpenedJets, start: int, stop: int, n_constituents: int
) -> None:
    for begin in range(start, stop, _READ_CHUNK):
        block = f.constituents[begin : min(begin + _READ_CHUNK, stop), :n_constituents, :]
        if not np.isfinite(block).all():
            bad = int((~np.isfinite(block)).any(axis=(1, 2)).sum())
            msg = f"{path}: {bad} jets have NaN or infinite constituent features"
            raise TriggerError(msg)


def _check_values(
    path: str | Path, y: np.ndarray | None, observables: dict[str, np.ndarray]
) -> None:
    """Finite observables and (when given) one-hot labels, else a one-line error."""
    for name, values in observables.items():
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).sum())
            msg = f"{path}: {bad} jets have NaN or infinite j_{name}"
            raise TriggerError(msg)
    if y is None:
        return
    if not np.isfinite(y).all() or not np.all(y.sum(axis=1) == 1) or not np.isin(y, (0, 1)).all():
        msg = f"{path}: labels j_g..j_t are not one-hot for every jet"
        raise TriggerError(msg)


def read_jets(
    paths: str | Path | Sequence[str | Path],
    n_constituents: int,
    limit: int | None = None,
) -> JetSample:
    """Read L1 words (the leading N candidates and the jet's), labels and observables."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    parts = [_read_file(p, n_constituents, limit) for p in paths]
    candidates, jet, y = (np.concatenate([p[k] for p in parts]) for k in range(3))
    keys = set.intersection(*(set(p[3]) for p in parts))
    observables = {k: np.concatenate([p[3][k] for p in parts]) for k in sorted(keys)}
    sample = JetSample(candidates, jet, y, np.ones(len(y), np.float32), observables)
    return sample if limit is None else sample.take(np.arange(min(limit, len(sample))))


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


def missing_classes(
    path: str | Path, split: DataConfig | None = None, limit: int | None = None
) -> list[str]:
    """The classes without a jet among the file's first `limit` jets, or among those of its
    test split under `split`: read from the label columns alone, before any work."""
    with OpenedJets(path) as f:
        n = len(f) if split is None or split.max_jets is None else min(len(f), split.max_jets)
        labels = f.jets[:n][:, f.label_columns()].argmax(axis=1)
    if split is not None:
        labels = labels[split_indices(n, split.split, split.split_seed)[2]]
    labels = labels[:limit]
    return [name for i, name in enumerate(CLASS_NAMES) if not np.any(labels == i)]


def require_every_class(
    path: str | Path, what: str, split: DataConfig | None = None, limit: int | None = None
) -> None:
    """A one-line error when `what` (the jets of `path` a stage evaluates) lacks a class."""
    missing = missing_classes(path, split, limit)
    if missing:
        msg = (
            f"{path}: {what} holds no {', '.join(missing)} jets: validation needs every class "
            "(its ROC curves and working points are per class)"
        )
        raise TriggerError(msg)


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Deterministic shuffled train/validation/test index arrays for `n` jets."""
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.round(np.cumsum(fractions)[:-1] * n).astype(int)
    return [np.sort(part) for part in np.split(order, bounds)]


def _split_indices(
    config: DataConfig, path: str | Path | Sequence[str | Path] | None
) -> tuple[JetSample, list[np.ndarray]]:
    """The file's jets and the indices of its training (capped at `train_jets`), validation
    and test splits."""
    source = path or config.path
    raw = read_jets(source, config.n_constituents, config.max_jets)
    splits = split_indices(len(raw), config.split, config.split_seed)
    if min(len(s) for s in splits) == 0:
        msg = (
            f"{_name(source)}: {len(raw)} jets are too few for the split {list(config.split)} "
            "(train, validation and test each need at least one)"
        )
        raise TriggerError(msg)
    if config.reweight == "pt_eta":
        raw.weight = flattening_weights(raw)
    # The file is shuffled when written, so its leading training jets are a random subset.
    splits[0] = splits[0][: config.train_jets]
    return raw, splits


def _raw_splits(
    config: DataConfig, path: str | Path | Sequence[str | Path] | None
) -> list[JetSample]:
    raw, splits = _split_indices(config, path)
    return [raw.take(i) for i in splits]


def held_out_jets(config: DataConfig, path: str | Path | None = None) -> JetSample:
    """The validation and test splits together: the jets of the file no weight was fitted to."""
    raw, splits = _split_indices(config, path)
    return raw.take(np.concatenate(splits[1:]))


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
    config: DataConfig,
    port: QuantizerConfig,
    path: str | Path | Sequence[str | Path] | None = None,
    stage: InputStage | None = None,
) -> Dataset:
    """Read, weight and split; fit the input stage on the training split and apply it.

    `port` is the firmware's input format (the recipe's `quantization.input`), which the
    features are rounded and saturated to. A given `stage` (a deployed firmware's) is applied
    as it is, not fitted. Data that cannot train a classifier (an empty split, a class absent
    from the training split) is refused here, before any training.
    """
    train, validation, test = _raw_splits(config, path)
    _require_every_class(train, path or config.path)
    if stage is None:
        features, bits, integer = config.features, port.bits, port.integer
        stage = fit_input_stage(train.candidates, train.jet, features, bits, integer)
    for sample in (train, validation, test):
        sample.x = stage.apply(sample.candidates, sample.jet)
    return Dataset(train, validation, test, stage)


def load_test_split(
    config: DataConfig,
    stage: InputStage,
    path: str | Path | Sequence[str | Path] | None = None,
) -> JetSample:
    """The test split through a model's saved input stage (not refitted)."""
    config = config.model_copy(update={"n_constituents": stage.n_constituents})
    test = _raw_splits(config, path)[2]
    test.x = stage.apply(test.candidates, test.jet)
    return test
