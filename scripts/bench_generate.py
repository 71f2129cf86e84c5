"""Generation throughput in jets per CPU-second, per class (a benchmark, not a test).

    .venv/bin/python scripts/bench_generate.py --jets 400 --workers 2

Each class runs as one shard in a worker process; CPU time is the worker's own process time,
so the figure does not depend on how busy the machine is.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import multiprocessing
import tempfile
import time
from pathlib import Path

from trigger.config import CLASS_NAMES
from trigger.data.generate import GenerationSettings, Shard, run_shard, shard_plan


def timed_shard(shard: Shard, settings: GenerationSettings, shard_dir: str) -> tuple[int, float]:
    started = time.process_time()
    run_shard(shard, settings, Path(shard_dir))
    return shard.n_jets, time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=400, help="jets per class")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    settings = GenerationSettings(args.jets, args.seed, shard_size=args.jets)
    plan = shard_plan(settings)
    context = multiprocessing.get_context("spawn")
    with (
        tempfile.TemporaryDirectory() as tmp,
        futures.ProcessPoolExecutor(args.workers, context) as pool,
    ):
        results = list(pool.map(timed_shard, plan, [settings] * len(plan), [tmp] * len(plan)))
    print(f"{'class':>5} {'jets':>6} {'CPU s':>8} {'jets/CPU-s':>11}")
    total_jets = total_cpu = 0.0
    for shard, (n, cpu) in zip(plan, results, strict=True):
        print(f"{CLASS_NAMES[shard.label]:>5} {n:>6} {cpu:>8.1f} {n / cpu:>11.0f}")
        total_jets, total_cpu = total_jets + n, total_cpu + cpu
    print(f"{'all':>5} {int(total_jets):>6} {total_cpu:>8.1f} {total_jets / total_cpu:>11.0f}")


if __name__ == "__main__":
    main()
