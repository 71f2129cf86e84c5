"""The baseline a physicist compares a tagger with: no network, three jet quantities.

A gradient-boosted classifier (scikit-learn's HistGradientBoostingClassifier) on the jet mass,
the soft-drop mass and the candidate count, which the data file computes from the same
detector-level candidates the networks see. It is trained on the run's training split (with the
run's kinematic weights) and cached like the teacher: under `<runs>/.baselines/<key>/`, the key
being the training data's identity, the split and the features, so every run on the same data
and split shares it and a second validation does not train it again.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trigger.config import DataConfig, QuantizerConfig
from trigger.errors import TriggerError
from trigger.io import Log, atomic_path, write_json

FEATURES = ("mass", "mass_mmdt", "multiplicity")
# Fixed: the baseline is a reference point, the same for every recipe on the same data.
SETTINGS = {"max_iter": 300, "learning_rate": 0.1, "early_stopping": True, "random_state": 0}
MODEL_FILE = "baseline.pkl"


@dataclass(frozen=True)
class Baseline:
    model: object
    folder: Path
    trained: bool  # False when it came from the cache


def baseline_key(data_identity: str, data: DataConfig) -> str:
    """Cache key: the training data's content, the split taken from it, the features."""
    import sklearn

    split = {k: data.model_dump(mode="json")[k]
             for k in ("split", "split_seed", "max_jets", "train_jets", "reweight")}  # fmt: skip
    payload = {
        "data": data_identity,
        "split": split,
        "features": list(FEATURES),
        "settings": SETTINGS,
        "sklearn": sklearn.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def features(observables: dict[str, np.ndarray], where: str) -> np.ndarray:
    """(jets, 3) baseline inputs; a one-line error when the file lacks one of them."""
    missing = [name for name in FEATURES if name not in observables]
    if missing:
        msg = f"{where}: no jet column j_{', j_'.join(missing)}, which the baseline reads"
        raise TriggerError(msg)
    return np.stack([observables[name] for name in FEATURES], axis=1).astype(np.float64)


def train_baseline(data: DataConfig, port: QuantizerConfig, data_path: Path):
    """The classifier fitted on the training split of `data_path` as `data` splits it."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from trigger.data.loader import load_dataset

    # The split does not depend on the candidates read: one per jet is enough.
    train = load_dataset(data.model_copy(update={"n_constituents": 1}), port, data_path).train
    model = HistGradientBoostingClassifier(**SETTINGS)
    model.fit(features(train.observables, str(data_path)), train.labels, sample_weight=train.weight)
    return model


def cached_baseline(
    data: DataConfig,
    port: QuantizerConfig,
    data_path: Path,
    data_identity: str,
    cache_dir: Path,
    log: Log = print,
) -> Baseline:
    """Reuse the baseline trained on this data and split, or train and cache it."""
    folder = cache_dir / baseline_key(data_identity, data)
    if (folder / MODEL_FILE).is_file():
        log(f"reusing baseline {folder}")
        try:
            with (folder / MODEL_FILE).open("rb") as handle:
                return Baseline(pickle.load(handle), folder, trained=False)
        except (OSError, pickle.UnpicklingError, AttributeError, ImportError) as error:
            msg = f"cached baseline unusable: {error}; delete {folder} to train it again"
            raise TriggerError(msg) from None
    log("training baseline (gradient-boosted trees on jet mass, soft-drop mass, count)")
    model = train_baseline(data, port, data_path)
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        with (tmp / MODEL_FILE).open("wb") as handle:
            pickle.dump(model, handle)
        write_json(tmp / "baseline.json", {"features": list(FEATURES), "settings": SETTINGS,
                                           "data": data_identity})  # fmt: skip
    return Baseline(model, folder, trained=True)


def baseline_logits(model, observables: dict[str, np.ndarray], where: str) -> np.ndarray:
    """Log-probabilities of the five classes: logits whose softmax is the classifier's."""
    probabilities = model.predict_proba(features(observables, where))
    return np.log(np.clip(probabilities, 1e-12, None)).astype(np.float32)
