"""Wall time of the same sweep on a LocalCluster of 1 and of 2 workers; the ratio is the figure.

    .venv/bin/python scripts/bench_sweep.py [--data data/demo.h5] [--trials 8] [--epochs 5]

The sweep: the default recipe, label-only, `--epochs` epochs, over a grid of phi widths, weight
bits and sparsity (the first `--trials` points of it, in the sweep's seeded order). Each run
starts from an empty output directory (under a temporary directory), so nothing is reused;
the cluster's start-up and TensorFlow's import in each worker are part of the time, as they
are for a user.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]


def sweep_file(folder: Path, data: Path, trials: int, epochs: int) -> Path:
    tree = {
        "recipe": str(ROOT / "models" / "default.yaml"),
        "data": str(data.resolve()),
        "fixed": {"training.epochs": epochs, "distillation.enabled": False},
        "space": {
            "architecture.phi": {"choices": [[8, 8], [16, 12]]},
            "quantization.default.weight.bits": {"choices": [4, 8]},
            "pruning.target_sparsity": {"choices": [0.0, 0.5]},
        },
        "objectives": ["accuracy", "lut"],
        "trials": trials,
        "sampler": "grid",
    }
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def timed_sweep(path: Path, out: Path, workers: int) -> float:
    from trigger.cluster import ClusterConfig, dask_client
    from trigger.sweep import load_sweep, sweep

    spec, _ = load_sweep(path)
    start = time.perf_counter()
    with dask_client(ClusterConfig(workers=workers), log=lambda _: None) as client:
        summary = sweep(spec, out, spec.data, client, log=lambda _: None)
    seconds = time.perf_counter() - start
    if summary["trials"]["complete"] != spec.trials:
        raise SystemExit(f"{workers} workers: {summary['trials']} (expected all to complete)")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "demo.h5")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    if not args.data.is_file():
        parser.error(f"{args.data}: not found (make it with `make demo`)")
    with tempfile.TemporaryDirectory() as tmp:
        path = sweep_file(Path(tmp), args.data, args.trials, args.epochs)
        seconds = {w: timed_sweep(path, Path(tmp) / f"w{w}", w) for w in (1, 2)}
    print(f"{args.trials}-trial sweep, {args.epochs} epochs, {args.data}, {os.cpu_count()} cores")
    for workers, wall in seconds.items():
        print(f"  {workers} worker(s): {wall:.1f} s")
    print(f"  speed-up 1 -> 2 workers: {seconds[1] / seconds[2]:.2f}x")


if __name__ == "__main__":
    main()
