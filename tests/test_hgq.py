"""HGQ students (`quantization.method: hgq`): training, bit widths, and the same firmware
guarantees as QKeras: fast emulator, HLS C++ and Verilog equal to the model bit for bit, from
L1 words, on real, random and edge-case jets, in any candidate order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_synthetic_file
from tests.constituents import edge_case_words, permute_candidates
from trigger.config import recipe_from_dict
from trigger.errors import TriggerError

pytest.importorskip("HGQ")

HGQ_RECIPE = {
    "name": "hgq_toy",
    "data": {"n_constituents": 8, "features": ["pt", "deta", "dphi", "count"]},
    "architecture": {"phi": [8, 6], "rho": [8]},
    "quantization": {"method": "hgq", "hgq": {"beta": 1.0e-5, "beta_start": 1.0e-7}},
    "pruning": {"enabled": False},
    # Distilled from a small teacher and started from the float twin, as the default recipe.
    "distillation": {
        "teacher": {
            "epochs": 2,
            "batch_size": 64,
            "n_constituents": 8,
            "architecture": {"embed": 8, "blocks": 1, "heads": 2, "rho": [8]},
        }
    },
    "training": {
        "epochs": 4,
        "batch_size": 64,
        "learning_rate": 0.01,
        "patience": 4,
        "init_from_float": True,
    },
    "firmware": {"emulation_jets": 500},
}


@pytest.fixture(scope="module")
def hgq_run(tmp_path_factory) -> Path:
    """An HGQ student trained end to end on toy jets (train_and_compress), distilled and
    started from its float twin."""
    from trigger.training.stage import train_and_compress

    work = tmp_path_factory.mktemp("hgq")
    data = write_synthetic_file(work / "toy.h5", 200)
    tree = HGQ_RECIPE | {"data": HGQ_RECIPE["data"] | {"path": str(data)}}
    recipe = recipe_from_dict(tree, source="hgq_toy")
    return train_and_compress(recipe, data, work / "runs" / "hgq_toy", verbose=0)


def _words(n: int, n_random: int = 3000, seed: int = 3) -> np.ndarray:
    """Random words across their ranges, then the edge cases (saturated words among them)."""
    from trigger.inputs import random_words

    rng = np.random.default_rng(seed)
    return np.concatenate([random_words(n_random, n, rng), edge_case_words(n, rng)])


def _student(run: Path):
    from trigger.config import load_recipe
    from trigger.inputs import InputStage
    from trigger.taggers import load_model

    recipe = load_recipe(run / "recipe.yaml")
    return load_model(run / "student.h5"), InputStage.load(run / "input_stage.json"), recipe


@pytest.mark.slow
def test_hgq_student_trains_and_reports_its_bit_widths(hgq_run: Path) -> None:
    metrics = json.loads((hgq_run / "metrics.json").read_text())["student"]
    assert 0 < metrics["mean_weight_bits"] <= 23
    assert 0 < metrics["mean_activation_bits"] <= 23
    assert 0 <= metrics["zero_bit_weight_fraction"] < 1
    assert (hgq_run / "teacher.h5").is_file()  # distilled
    # Network weights only: phi [8, 6], rho [8], 5 outputs over 4 features.
    assert metrics["parameters"] == (4 * 8 + 8) + (8 * 6 + 6) + (6 * 8 + 8) + (8 * 5 + 5)


@pytest.mark.slow
def test_fast_emulator_and_trace_equal_the_hgq_model_in_any_candidate_order(hgq_run) -> None:
    """THE test for HGQ: the plan's arithmetic (fast emulator) and its da4ml trace equal the
    Keras proxy model bit for bit from L1 words; shuffled candidates give the same logits."""
    from da4ml.trace import comb_trace  # noqa: F401  (da4ml present)

    from trigger.hls.fast import fast_emulator
    from trigger.rtl import trace_student

    model, stage, recipe = _student(hgq_run)
    words = _words(stage.n_constituents)
    keras = model.predict(stage.apply_words(words), verbose=0, batch_size=4096)
    fast = fast_emulator(model, stage, recipe.firmware)
    np.testing.assert_array_equal(fast(words), keras.astype(np.float64))
    shuffled = permute_candidates(words, stage.n_constituents, np.random.default_rng(5))
    np.testing.assert_array_equal(fast(shuffled), fast(words))
    comb = trace_student(model, stage, recipe.firmware).comb
    some = np.r_[0:300, 3000 : len(words)]  # random words and every edge case
    traced = np.array([comb.predict(w.astype(np.float64)) for w in words[some]])
    np.testing.assert_array_equal(traced.reshape(len(some), -1), keras[some])


@pytest.mark.slow
def test_hgq_firmware_is_bit_exact_in_hls_and_verilator(hgq_run: Path, tmp_path: Path) -> None:
    """emit-hls: the HLS C++ emulator and its testbench bit-exact on the run's test jets,
    validate's firmware too; the Verilog bit-exact in Verilator, including saturating words."""
    if shutil.which("verilator") is None:
        pytest.skip("verilator not on PATH (apt-get install verilator)")
    from trigger.hls import emit_hls, emulate
    from trigger.rtl import emit_rtl

    out = emit_hls(hgq_run, tmp_path / "fw")
    emulation = json.loads((out / "emulation.json").read_text())
    assert emulation["bit_exact_fraction"] == 1.0 and emulation["jets"] == 200  # the test split
    bench = emulation["testbench"]
    assert bench["exit_code"] == 0
    assert bench["printed"] == f"bit-exact: {bench['jets']} of {bench['jets']} jets"
    # Keras is the reference only where its float32 sums are exact.
    keras_exact = json.loads((out / "conversion.json").read_text())["keras_float32_exact"]
    reference = "keras-float32" if keras_exact else "integer-plan"
    assert emulation["reference"] == reference
    from trigger.validation.stage import validate

    report = validate(hgq_run, out, tmp_path / "validation")
    assert report.metrics["classification"]["firmware_student_bit_exact_fraction"] == 1.0
    assert report.metrics["classification"]["firmware_proven_against"] == reference
    assert (
        f"checked against the {reference} reference" in (report.out_dir / "report.md").read_text()
    )
    model, stage, recipe = _student(hgq_run)
    words = _words(stage.n_constituents, n_random=1000)
    keras = model.predict(stage.apply_words(words), verbose=0, batch_size=4096)
    np.testing.assert_array_equal(emulate(out, words), keras)
    figures = emit_rtl(model, stage, tmp_path / "rtl", recipe.firmware, words, yosys=False)
    assert figures["bit_exact"]["bit_exact_fraction"] == 1.0


def test_hgq_with_pruning_or_without_quantization_is_refused() -> None:
    tree = HGQ_RECIPE | {"pruning": {"enabled": True}}
    with pytest.raises(TriggerError, match="hgq prunes by learning zero-bit weights"):
        recipe_from_dict(tree, source="r")
    tree = HGQ_RECIPE | {"quantization": {"method": "hgq", "enabled": False}}
    with pytest.raises(TriggerError, match=r"needs quantization\.enabled: true"):
        recipe_from_dict(tree, source="r")


def test_a_per_element_format_is_refused_with_the_layer_named() -> None:
    import tensorflow as tf
    from HGQ.proxy import FixedPointQuantizer

    from trigger.config import FirmwareConfig
    from trigger.hls.convert import plan_student

    x = tf.keras.Input((4, 3))
    shape = (1, 4, 3)
    q = FixedPointQuantizer(np.ones(shape, np.int8), np.full(shape, 8, np.int8),
                            np.full(shape, 3, np.int8), "TRN", "SAT", name="port")(x)  # fmt: skip
    h = tf.keras.layers.Dense(2, name="phi_0")(q)
    bits = np.array([[[6, 7]]], np.int8)
    h = FixedPointQuantizer(np.ones((1, 1, 2), np.int8), bits, np.full((1, 1, 2), 2, np.int8),
                            "TRN", "SAT", name="phi_0_quantizer")(h)  # fmt: skip
    with pytest.raises(TriggerError, match="'phi_0_quantizer': a format per element"):
        plan_student(tf.keras.Model(x, h), FirmwareConfig())


@pytest.mark.slow
def test_hgq_context_student_is_bit_exact_in_every_engine(tmp_path: Path) -> None:
    """An HGQ context student (HAdd quantizing the context sum onto its learned format): the
    fast emulator, the da4ml trace and the compiled HLS C++ equal its proxy model bit for bit,
    in any candidate order."""
    from tests.constituents import stage_for_random_words
    from trigger.hls import emulate
    from trigger.hls.convert import plan_student
    from trigger.hls.fast import fast_emulator
    from trigger.hls.stage import write_project
    from trigger.rtl import trace_student
    from trigger.taggers import build_student, hgq

    tree = HGQ_RECIPE | {"architecture": {"kind": "context", "phi": [8, 6], "rho": [8]}}
    recipe = recipe_from_dict(tree, source="hgq_context")
    port = recipe.quantization.input
    stage = stage_for_random_words(8, tuple(recipe.data.features), port.bits, port.integer)
    words = _words(stage.n_constituents, 2000)
    x = stage.apply_words(words)
    model, _ = hgq.to_firmware_model(build_student(recipe, len(recipe.data.features)), x)
    plan = plan_student(model, recipe.firmware)
    kinds = [op.kind for op in plan.arithmetic()]
    assert "save" in kinds and kinds[kinds.index("add") + 1] == "round"  # HAdd's quantizer
    keras = model.predict(x, verbose=0, batch_size=4096).astype(np.float64)
    assert len(np.unique(keras.argmax(1))) > 1
    fast = fast_emulator(model, stage, recipe.firmware)
    np.testing.assert_array_equal(fast(words), keras)
    shuffled = permute_candidates(words, stage.n_constituents, np.random.default_rng(5))
    np.testing.assert_array_equal(fast(shuffled), keras)
    comb = trace_student(model, stage, recipe.firmware).comb
    some = np.r_[0:200, 2000 : len(words)]  # random words and every edge case
    traced = np.array([comb.predict(w.astype(np.float64)) for w in words[some]])
    np.testing.assert_array_equal(traced.reshape(len(some), -1), keras[some])
    write_project(model, stage, tmp_path / "hls", recipe.firmware)
    np.testing.assert_array_equal(emulate(tmp_path / "hls", words), keras)
