"""Time emit + compile of a default-size student, jets/s of its emulators on one core, and
`trigger emulate` from the command line: start-up and end to end.

Three ways to get the firmware's output, each on the same jets' L1 words and on one thread
(`--threads` for the HLS C++ emulator only): the fast emulator (numpy, `trigger.hls.fast`),
the HLS C++ emulator (g++, `trigger.hls.emulator`) and the Python input stage + QKeras
`predict`; the ratios are the figures. All three run the whole path, words to logits, and the
script checks that they agree bit for bit.

Then the same jets are written as a file in the hls4ml layout (150 candidates x 16 features
per jet) and the emitted directory is run by `trigger emulate` (fast engine) in a process of
its own: its start-up (wall time on a one-jet file) and its end-to-end rate on all the jets
(reading the file, emulating, writing the predictions, hashing the file), checked bit for bit
against the fast emulator's own output.

    .venv/bin/python scripts/bench_emulator.py [--jets 200000] [--threads N] [--hls4ml-predict]

The student is models/default.yaml's architecture with random weights: timing does not depend
on training.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core for numpy's products

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRIGGER = str(Path(sys.executable).with_name("trigger"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=1, help="of the HLS C++ emulator")
    parser.add_argument(
        "--hls4ml-predict", action="store_true", help="also time hls4ml's per-jet predict()"
    )
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from trigger.config import load_recipe
    from trigger.hls import Emulator, build_emulator, convert_student, input_stage
    from trigger.hls.fast import fast_emulator, save_arithmetic
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
        hls_model, plan = convert_student(model, project, recipe.firmware)
        save_arithmetic(project, plan)
        input_stage.install(project, stage, int(model.output_shape[-1]))
        t1 = time.perf_counter()
        build_emulator(project, (3 * n + 4,), model.output_shape[1:])
        t2 = time.perf_counter()
        print(f"student: N={n} F={f} phi={recipe.architecture.phi} rho={recipe.architecture.rho}")
        print(f"emit (convert + write project): {t1 - t0:6.1f} s")
        print(f"compile emulator (g++ -O3):     {t2 - t1:6.1f} s")
        print(f"emit + compile:                 {t2 - t0:6.1f} s")
        emulator = Emulator(project, threads=args.threads)
        fast = fast_emulator(model, stage, recipe.firmware)
        rates = {}
        outputs = {}
        runs = {
            "fast emulator (numpy, 1 thread)": fast,
            f"HLS C++ emulator ({emulator.threads} thread(s))": emulator,
            "input stage + QKeras predict (1 thread)": lambda w: model.predict(
                stage.apply_words(w), batch_size=4096, verbose=0
            ),
        }
        for name, run in runs.items():
            run(words[:2000])  # warm up
            t0 = time.perf_counter()
            outputs[name] = run(words)
            rates[name] = len(words) / (time.perf_counter() - t0)
            print(f"{name:42s} {rates[name]:10.0f} jets/s ({len(words)} jets)")
        slowest = min(rates.values())
        print(
            "ratios: "
            + ", ".join(f"{n.split(' (')[0]} {r / slowest:.1f}" for n, r in rates.items())
        )
        first, *others = outputs.values()
        same = all(np.array_equal(first, other) for other in others)
        print(f"all three bit-exact with each other on {len(words)} jets: {same}")
        fast_name = next(iter(rates))
        command_line(project, stage, words, Path(tmp), rates[fast_name], outputs[fast_name])
        if args.hls4ml_predict:
            with open(os.devnull, "w") as sink, contextlib_redirect(sink):
                hls_model.compile()
            sample = x[:2000]
            t0 = time.perf_counter()
            hls_model.predict(np.ascontiguousarray(sample.reshape(len(sample), -1)))
            dt = time.perf_counter() - t0
            print(f"hls4ml predict (per jet, network only): {len(sample) / dt:10.0f} jets/s")


def command_line(
    project: Path, stage, words: np.ndarray, tmp: Path, engine_rate: float, expected: np.ndarray
) -> None:
    """`trigger emulate` on the emitted directory: start-up, and jets/s end to end."""
    import h5py

    from trigger.artifacts import EMIT, seal

    stage.save(project / "input_stage.json")
    seal(project, EMIT, {})  # as emit-hls seals its output
    one, data = write_layout(tmp / "one.h5", words[:1]), write_layout(tmp / "jets.h5", words)
    startup = run_emulate(project, one, tmp / "one_predictions.h5")
    total = run_emulate(project, data, tmp / "predictions.h5")
    with h5py.File(tmp / "predictions.h5", "r") as f:
        same = np.array_equal(f["logits"][()], expected)
    print(f"trigger emulate start-up (a one-jet file):  {startup:6.2f} s")
    print(
        f"trigger emulate end to end, {len(words)} jets: {total:6.2f} s, "
        f"{len(words) / total:10.0f} jets/s ({len(words) / (total - startup):.0f} jets/s after "
        f"start-up); fast engine alone {engine_rate:.0f} jets/s, "
        f"{engine_rate / (len(words) / total):.2f} times the end-to-end rate"
    )
    print(f"trigger emulate bit-exact with the fast emulator on {len(words)} jets: {same}")


def write_layout(path: Path, words: np.ndarray) -> Path:
    """The jets of `words` as a file in the hls4ml layout (150 candidates, 16 features, jet
    columns and labels), with the values the words stand for."""
    from trigger.data.layout import (
        JET_FEATURES,
        MAX_CONSTITUENTS,
        PARTICLE_FEATURES,
        write_jets_file,
    )
    from trigger.inputs import ANGLE_LSB, PT_LSB, split_words

    candidates, jet = split_words(words, (words.shape[1] - 4) // 3)
    lsb = (PT_LSB, ANGLE_LSB, ANGLE_LSB, 1.0)  # pT, eta, phi, count
    constituents = np.zeros((len(words), MAX_CONSTITUENTS, len(PARTICLE_FEATURES)), np.float32)
    for k, name in enumerate(("j1_pt", "j1_eta", "j1_phi")):
        column = PARTICLE_FEATURES.index(name)
        constituents[:, : candidates.shape[1], column] = candidates[..., k] * lsb[k]
    jets = np.zeros((len(words), len(JET_FEATURES)), np.float32)
    for k, name in enumerate(("j_pt", "j_eta", "j_phi", "j_multiplicity")):
        jets[:, JET_FEATURES.index(name)] = jet[:, k] * lsb[k]
    jets[:, JET_FEATURES.index("j_g")] = 1
    write_jets_file(path, constituents, jets)
    return path


def run_emulate(project: Path, data: Path, out: Path) -> float:
    """Wall seconds of `trigger emulate --engine fast` in a process of its own."""
    start = time.perf_counter()
    subprocess.run(
        [TRIGGER, "emulate", str(project), "--data", str(data), "--out", str(out)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def contextlib_redirect(sink):
    import contextlib

    return contextlib.redirect_stdout(sink)


if __name__ == "__main__":
    main()
