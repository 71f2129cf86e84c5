"""Which inputs the firmware should compute: accuracy against whole-path cost, per feature set.

    .venv/bin/python scripts/bench_inputs.py DATA.h5 [--out runs/bench_inputs]
        [--sets pt,deta,dphi pt,deta,dphi,count ...] [--n 32 64] [--recipes default ...]
        [--distill] [--exact-inputs] [--set KEY=VALUE ...]

For every feature set (and candidate count N) the default recipe's float reference and student
are trained on DATA through the firmware's input stage, and da4ml's cost model prices the whole
firmware path (input stage + student, L1 words to logits; an estimate). Distillation is off
unless `--distill`: the comparison is between inputs, and one teacher per input set would
triple the time. A float-only row: `--exact-inputs` gives (pt, deta, dphi) in float64 from the
file's columns, not rounded to words: on a file generated with `--no-l1-rounding`, next to that
file's `default` row, what L1 rounding costs. Writes OUT/bench_inputs.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SETS = (
    "pt,deta,dphi",
    "pt,deta,dphi,count",
    "pt,deta,dphi,dr2",
    "pt,deta,dphi,dr2,count",
    "pt,etarot,phirot",
    "pt,etarot,phirot,count",
)


EXTRA: list[str] = []  # --set overrides, applied to every recipe


def _recipe(base: str, features: tuple[str, ...], n: int, distill: bool, data: Path):
    from trigger.config import load_recipe

    overrides = [
        *EXTRA,
        f"data.features=[{', '.join(features)}]",
        f"data.n_constituents={n}",
        f"data.path={data}",
        f"distillation.enabled={str(distill).lower()}",
    ]
    return load_recipe(ROOT / "models" / f"{base}.yaml", overrides)


def train_row(base: str, features, n: int, distill: bool, data: Path, out: Path) -> dict:
    from trigger.config import FirmwareConfig
    from trigger.inputs import InputStage
    from trigger.rtl import estimate
    from trigger.taggers import load_model
    from trigger.training.stage import train_and_compress

    recipe = _recipe(base, features, n, distill, data)
    name = f"{base}-n{n}-{'-'.join(features)}{'-distilled' if distill else ''}"
    run = out / name
    start = time.perf_counter()
    if not (run / "metrics.json").is_file():
        train_and_compress(recipe, data, run, verbose=0, log=lambda m: print(f"  {name}: {m}"))
    metrics = json.loads((run / "metrics.json").read_text())
    stage = InputStage.load(run / "input_stage.json")
    figures = estimate(
        load_model(run / "student.h5"), stage, out / "estimates" / name, FirmwareConfig(),
        student=True,
    )  # fmt: skip
    return {
        "run": name,
        "recipe": base,
        "features": list(features),
        "n": n,
        "distilled": distill,
        "float_accuracy": metrics["float"]["accuracy"],
        "student_accuracy": metrics["student"]["accuracy"],
        "teacher_accuracy": (metrics.get("teacher") or {}).get("accuracy"),
        "latency_cycles": figures["latency_cycles"],
        "lut_estimate": figures["lut"],
        "ff_estimate": figures["ff"],
        "input_stage": figures["input_stage"],
        "seconds": round(time.perf_counter() - start),
    }


def _float_row(name: str, recipe, dataset, features: list[str], note: str) -> dict:
    """Train the float reference on `dataset` as it is (its `x` replaced by the caller)."""
    from trigger.training.fit import evaluate
    from trigger.training.student import train_float

    start = time.perf_counter()
    reference = train_float(recipe, dataset, verbose=0)
    return {
        "run": name,
        "recipe": "default",
        "features": features,
        "n": recipe.data.n_constituents,
        "distilled": False,
        "float_accuracy": evaluate(reference.model, dataset.test)["accuracy"],
        "student_accuracy": None,
        "note": note,
        "seconds": round(time.perf_counter() - start),
    }


def exact_inputs_row(data: Path, n: int) -> dict:
    """The float reference on (pt, deta, dphi) computed in float64 from the file's own columns,
    not rounded to words, normalised by the training split's mean and spread: on a file made
    with `--no-l1-rounding`, what the rounding to L1 words costs against the `default` row."""
    from trigger.data.layout import OpenedJets
    from trigger.data.loader import load_dataset, split_indices

    recipe = _recipe("default", ("pt", "deta", "dphi"), n, False, data)
    dataset = load_dataset(recipe.data, recipe.quantization.input, data)
    with OpenedJets(data) as f:
        particles = f.constituents[:, :n, :]
        jets = f.jets[()]
        pt, eta, phi = (particles[..., f.particle_index(c)] for c in ("pt", "eta", "phi"))
        jet_eta, jet_phi = (jets[:, f.jet_names.index(c)][:, None] for c in ("eta", "phi"))
    dphi = (phi - jet_phi + np.pi) % (2 * np.pi) - np.pi
    raw = np.stack([pt, eta - jet_eta, dphi], -1).astype(np.float64)
    real = pt > 0
    parts = split_indices(len(raw), recipe.data.split, recipe.data.split_seed)
    train_real = raw[parts[0]][real[parts[0]]]
    center, spread = train_real.mean(axis=0), train_real.std(axis=0)
    x = np.where(real[..., None], (raw - center) / spread, 0.0).astype(np.float32)
    for sample, index in zip((dataset.train, dataset.validation, dataset.test), parts, strict=True):
        sample.x = x[index]
    name = f"{data.stem}-n{n}-exact-inputs-float"
    note = "float only, inputs in float64 from the file's columns (not L1 words)"
    return _float_row(name, recipe, dataset, ["pt", "deta", "dphi"], note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_inputs")
    parser.add_argument("--sets", nargs="*", default=list(DEFAULT_SETS))
    parser.add_argument("--n", nargs="*", type=int, default=[32])
    parser.add_argument("--recipes", nargs="*", default=["default"])
    parser.add_argument("--distill", action="store_true")
    parser.add_argument(
        "--exact-inputs", action="store_true", help="also the float reference on exact inputs"
    )
    parser.add_argument("--set", action="append", default=[], help="recipe override, repeatable")
    args = parser.parse_args()
    EXTRA.extend(args.set)

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "bench_inputs.json"
    rows = json.loads(results.read_text()) if results.is_file() else []
    done = {r["run"] for r in rows}

    def keep(row: dict) -> None:
        rows.append(row)
        results.write_text(json.dumps(rows, indent=2) + "\n")
        print(json.dumps(row), flush=True)

    for base in args.recipes:
        for n in args.n:
            for text in args.sets:
                features = tuple(text.split(","))
                name = f"{base}-n{n}-{'-'.join(features)}{'-distilled' if args.distill else ''}"
                if name not in done:
                    keep(train_row(base, features, n, args.distill, args.data, args.out))
    if args.exact_inputs:
        for n in args.n:
            if f"{args.data.stem}-n{n}-exact-inputs-float" not in done:
                keep(exact_inputs_row(args.data, n))
    print("run | float | student | LUT (est.) | input stage LUT | cycles")
    for r in rows:
        stage = r.get("input_stage") or {}
        student = r["student_accuracy"]
        print(
            f"{r['run']} | {r['float_accuracy']:.4f} | "
            f"{'-' if student is None else f'{student:.4f}'} | {r.get('lut_estimate', '-')} | "
            f"{stage.get('lut', '-')} | {r.get('latency_cycles', '-')}"
        )


if __name__ == "__main__":
    main()
