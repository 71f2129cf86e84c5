"""What the candidates support without a network: gradient-boosted trees on jet substructure.

    .venv/bin/python scripts/bench_ceiling.py DATA.h5 [--n 32] [--out runs/bench_ceiling]

On DATA's test split (the recipes' split: 0.6/0.2/0.2, seed 42, kinematic weights in training)
three scikit-learn HistGradientBoostingClassifiers, with the validation report's baseline
settings (`trigger.validation.baseline.SETTINGS`), are trained on the training split:

- `three quantities`: jet mass, soft-drop mass, candidate count (the report's baseline);
- `substructure, leading N`: those three plus N-subjettiness and energy correlations
  (`trigger.validation.substructure`) of the leading N candidates, the firmware's view;
- `substructure, all candidates`: the same observables from every stored candidate (up to 150).

The last is the ceiling a tagger's accuracy is read against (docs/benchmarks.md). Accuracy
errors are binomial; mean AUC errors as in the validation report. Writes OUT/bench_ceiling.json
and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

MAX_CANDIDATES = 150
THREE = ("mass", "mass_mmdt", "multiplicity")


def _features(sample, names: tuple[str, ...], candidates: int | None) -> np.ndarray:
    from trigger.validation import substructure

    columns = [sample.observables[name].astype(np.float64) for name in THREE]
    if candidates is not None:
        observed = substructure.observables(sample.candidates[:, :candidates])
        columns += [observed[name] for name in names]
    return np.stack(columns, axis=1)


def _score(model, x: np.ndarray, labels: np.ndarray) -> dict:
    from trigger.validation.metrics import accuracy, accuracy_uncertainty, mean_auc

    logits = np.log(np.clip(model.predict_proba(x), 1e-12, None))
    auc, auc_error = mean_auc(logits, labels)
    return {
        "accuracy": accuracy(logits, labels),
        "accuracy_error": accuracy_uncertainty(logits, labels),
        "mean_auc": auc,
        "mean_auc_error": auc_error,
    }


def main() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from trigger.config import DataConfig
    from trigger.data.loader import _raw_splits
    from trigger.validation.baseline import SETTINGS
    from trigger.validation.substructure import NAMES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--n", type=int, default=32, help="candidates the firmware sees")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_ceiling"))
    args = parser.parse_args()

    start = time.perf_counter()
    config = DataConfig(n_constituents=MAX_CANDIDATES)
    train, _, test = _raw_splits(config, args.data)
    rows = {}
    for label, candidates in (
        ("three quantities", None),
        (f"substructure, leading {args.n}", args.n),
        ("substructure, all candidates", MAX_CANDIDATES),
    ):
        x_train = _features(train, NAMES, candidates)
        x_test = _features(test, NAMES, candidates)
        model = HistGradientBoostingClassifier(**SETTINGS)
        model.fit(x_train, train.labels, sample_weight=train.weight)
        rows[label] = _score(model, x_test, test.labels)
        print(f"{label}: {rows[label]['accuracy']:.4f}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "data": str(args.data),
        "train_jets": len(train),
        "test_jets": len(test),
        "observables": ["mass", "mass_mmdt", "multiplicity", *NAMES],
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
    }
    (args.out / "bench_ceiling.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{len(train)} training jets, {len(test)} test jets of {args.data}\n")
    print("| classifier | accuracy | mean AUC |\n|---|---|---|")
    for label, r in rows.items():
        print(
            f"| {label} | {r['accuracy']:.4f} +- {r['accuracy_error']:.4f} "
            f"| {r['mean_auc']:.4f} +- {r['mean_auc_error']:.4f} |"
        )


if __name__ == "__main__":
    main()
