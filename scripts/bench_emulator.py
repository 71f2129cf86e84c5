"""Time emit + compile of a default-size student and the emulator's throughput in jets/s.

The emulator runs the whole firmware path: L1 words through the input stage and the network.

    .venv/bin/python scripts/bench_emulator.py [--jets 50000] [--threads N] [--hls4ml-predict]

The student is models/default.yaml's architecture with random weights: timing does not depend
on training.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument(
        "--hls4ml-predict", action="store_true", help="also time hls4ml's per-jet predict()"
    )
    args = parser.parse_args()

    import tensorflow as tf

    from trigger.config import load_recipe
    from trigger.hls import Emulator, build_emulator, convert_student, input_stage
    from trigger.inputs import fit_input_stage, random_words
    from trigger.taggers import build_student

    recipe = load_recipe(ROOT / "models" / "default.yaml")
    tf.keras.utils.set_random_seed(0)
    model = build_student(recipe, len(recipe.data.features))
    n, f = model.input_shape[1:]
    rng = np.random.default_rng(0)
    words = random_words(args.jets, n, rng)
    candidates, jet = words[:, : 3 * n].reshape(-1, n, 3), words[:, 3 * n :]
    port = recipe.quantization.input
    stage = fit_input_stage(candidates, jet, recipe.data.features, port.bits, port.integer)
    x = stage.apply(candidates, jet)
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "fw"
        t0 = time.perf_counter()
        hls_model, _ = convert_student(model, project, recipe.firmware)
        input_stage.install(project, stage, int(model.output_shape[-1]))
        t1 = time.perf_counter()
        build_emulator(project, (3 * n + 4,), model.output_shape[1:])
        t2 = time.perf_counter()
        print(f"student: N={n} F={f} phi={recipe.architecture.phi} rho={recipe.architecture.rho}")
        print(f"emit (convert + write project): {t1 - t0:6.1f} s")
        print(f"compile emulator (g++ -O3):     {t2 - t1:6.1f} s")
        print(f"emit + compile:                 {t2 - t0:6.1f} s")
        emulator = Emulator(project, threads=args.threads)
        emulator(words[:100])  # warm up
        t0 = time.perf_counter()
        y = emulator(words)
        dt = time.perf_counter() - t0
        print(f"emulator ({emulator.threads} threads): {len(x) / dt:10.0f} jets/s ({len(x)} jets)")
        ref = model.predict(x[:5000], batch_size=4096, verbose=0)
        print(f"bit-exact vs QKeras on 5000 jets:  {np.mean(np.all(y[:5000] == ref, axis=1)):.4f}")
        if args.hls4ml_predict:
            with open(os.devnull, "w") as sink, contextlib_redirect(sink):
                hls_model.compile()
            sample = x[:2000]
            t0 = time.perf_counter()
            hls_model.predict(np.ascontiguousarray(sample.reshape(len(sample), -1)))
            dt = time.perf_counter() - t0
            print(f"hls4ml predict (per jet, network only): {len(sample) / dt:10.0f} jets/s")


def contextlib_redirect(sink):
    import contextlib

    return contextlib.redirect_stdout(sink)


if __name__ == "__main__":
    main()
