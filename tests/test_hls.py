"""The firmware does exactly what the QKeras student does: bit for bit, on every jet.

One shared helper (`firmware`, session-scoped per configuration) builds a student from a
recipe, gives it non-trivial random weights, converts and compiles it once; every exactness
test is swept over all configurations with `pytest.mark.parametrize`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import write_synthetic_file
from tests.constituents import edge_case_words, permute_candidates
from trigger.artifacts import TRAIN, seal
from trigger.config import FirmwareConfig, recipe_from_dict, save_recipe
from trigger.errors import TriggerError
from trigger.inputs import split_words


def _save(model, path: Path) -> None:
    """HDF5, as train-and-compress writes it; the two save-time notes are expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are saving your model as an HDF5", UserWarning)
        warnings.filterwarnings("ignore", r"The `keras.constraints.serialize\(\)`", UserWarning)
        model.save(path, include_optimizer=False, save_format="h5")


def _q(bits: int, integer: int) -> dict[str, int]:
    return {"bits": bits, "integer": integer}


# Different N, widths, bit widths, input formats, masked pooling (phi without biases), a context
# block (an Add of a branch), and an MLP (Flatten) for good measure.
CONFIGS: dict[str, dict[str, Any]] = {
    "deepsets_n16_8bit": {
        "data": {"n_constituents": 16, "features": ["pt", "deta", "dphi"]},
        "architecture": {"kind": "deepsets", "phi": [32, 16], "rho": [16], "pooling": "mean"},
        "quantization": {
            "input": _q(12, 3),
            "default": {"weight": _q(8, 0), "bias": _q(8, 0), "activation": _q(8, 3)},
            "output": _q(16, 6),
        },
    },
    "deepsets_n32_6bit": {
        "data": {"n_constituents": 32, "features": ["pt", "deta", "dphi", "dr2", "count"]},
        "architecture": {"kind": "deepsets", "phi": [16, 16, 16], "rho": [16], "pooling": "mean"},
        "quantization": {
            "input": _q(9, 2),
            "default": {"weight": _q(6, 0), "bias": _q(6, 1), "activation": _q(6, 2)},
            "output": _q(10, 4),
        },
    },
    "deepsets_n8_6bit_masked": {
        "data": {"n_constituents": 8, "features": ["pt", "deta", "dphi", "present"]},
        "architecture": {
            "kind": "deepsets",
            "phi": [12, 8],
            "rho": [8],
            "pooling": "max",
            "mask": True,
        },
        "quantization": {
            "input": _q(10, 3),
            "default": {"weight": _q(6, 0), "bias": _q(6, 0), "activation": _q(6, 2)},
            "output": _q(12, 5),
        },
    },
    "context_n16_7bit": {
        "data": {"n_constituents": 16, "features": ["pt", "deta", "dphi", "count"]},
        "architecture": {"kind": "context", "phi": [16, 12], "rho": [16], "context_blocks": 1},
        "quantization": {
            "input": _q(10, 3),
            "default": {"weight": _q(7, 1), "bias": _q(7, 0), "activation": _q(7, 3)},
            "output": _q(12, 5),
        },
    },
    "mlp_n16_7bit": {
        "data": {"n_constituents": 16, "features": ["count", "dr2", "dphi"]},
        "architecture": {"kind": "mlp", "dense": [32, 16]},
        "quantization": {
            "input": _q(10, 3),
            "default": {"weight": _q(7, 0), "bias": _q(7, 0), "activation": _q(7, 3)},
            "output": _q(12, 5),
        },
    },
}
# Random-weight seeds other than 0: with seed 0 one class wins on every toy jet (the context
# block's common offset; the masked student's bias-free phi), which would hide wrong logits
# behind a constant argmax.
SEEDS = {"context_n16_7bit": 3, "deepsets_n8_6bit_masked": 5}
# Permutation invariant by construction: every candidate goes through the same layers.
DEEPSETS = [name for name, c in CONFIGS.items() if c["architecture"]["kind"] != "mlp"]


@dataclass
class Firmware:
    recipe: Any
    model: Any  # the QKeras student (reference, behind `stage`)
    stage: Any  # the input stage fitted on the toy jets
    project: Path  # compiled firmware directory
    summary: dict[str, Any]
    words: np.ndarray  # L1 words of the toy jets (all splits)


@pytest.fixture(scope="session")
def toy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few thousand toy jets: enough to cover every output class and multiplicity."""
    return write_synthetic_file(tmp_path_factory.mktemp("hls_data") / "toy.h5", 800, seed=3)


def make_recipe(name: str, data_path: Path):
    tree = json.loads(json.dumps(CONFIGS[name]))
    tree["name"] = name
    tree["data"]["path"] = str(data_path)
    return recipe_from_dict(tree, source=name)


def random_student(recipe, seed: int = 0):
    """The recipe's student with glorot kernels, random biases, quantized: non-trivial weights."""
    import tensorflow as tf

    from trigger.taggers import build_student

    tf.keras.utils.set_random_seed(seed)
    model = build_student(recipe, len(recipe.data.features))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "QDense":
            kernel, *bias = layer.get_weights()
            bias = [rng.uniform(-0.5, 0.5, b.shape).astype("float32") for b in bias]
            layer.set_weights([kernel * 1.5, *bias])
    return model


def _toy(recipe) -> tuple[Any, np.ndarray]:
    """The input stage fitted on the toy file, and the words of all its jets."""
    from trigger.data.loader import load_dataset

    data = load_dataset(recipe.data, recipe.quantization.input)
    words = np.concatenate([s.words for s in (data.train, data.validation, data.test)])
    return data.input_stage, words


_CACHE: dict[str, Firmware] = {}


@pytest.fixture(scope="session")
def firmware(request, toy_file, tmp_path_factory) -> Firmware:
    """Convert + compile one configuration once per session (param: a CONFIGS key)."""
    name = request.param
    if name not in _CACHE:
        from trigger.hls.stage import write_project

        recipe = make_recipe(name, toy_file)
        model = random_student(recipe, SEEDS.get(name, 0))
        stage, words = _toy(recipe)
        project = tmp_path_factory.mktemp(f"fw_{name}")
        _, plan = write_project(model, stage, project, recipe.firmware)
        _CACHE[name] = Firmware(recipe, model, stage, project, plan.summary(), words)
    return _CACHE[name]


def reference(fw: Firmware, words: np.ndarray) -> np.ndarray:
    """The Python input stage, then the QKeras student."""
    return fw.model.predict(fw.stage.apply_words(words), batch_size=2048, verbose=0)


def assert_bit_exact(fw: Firmware, words: np.ndarray) -> None:
    from trigger.hls import emulate

    emulated = emulate(fw.project, words)
    assert emulated.shape == (len(words), 5)
    np.testing.assert_array_equal(emulated, reference(fw, words))


def rounding_stress(fast, words: np.ndarray) -> dict[str, int]:
    """How many values meet an exact rounding tie, and how many saturate, at the network's
    quantizers on these words: what makes a set of jets adversarial for an emulator."""
    from trigger.hls.fast import run_operations

    candidates, jets = split_words(words, fast.stage.n_constituents)
    x = fast.stage.apply(candidates, jets).astype(np.float64)
    stress = {"ties": 0, "saturated": 0}

    def count(op, x: np.ndarray) -> None:
        if op.kind == "round":
            codes = x / float(op.fmt.lsb)
            low, high = float(op.fmt.min / op.fmt.lsb), float(op.fmt.max / op.fmt.lsb)
            stress["ties"] += int(np.sum(codes - np.floor(codes) == 0.5))
            stress["saturated"] += int(np.sum((codes < low - 0.5) | (codes > high + 0.5)))

    run_operations(x, fast.operations, count)
    return stress


@pytest.mark.slow
@pytest.mark.parametrize("firmware", list(CONFIGS), indirect=True)
def test_fast_emulator_equals_the_hls_emulator(firmware: Firmware) -> None:
    """The vectorised emulator against the compiled HLS C++, bit for bit, on toy jets, random
    jets, the input stage's edge cases, and words that hit rounding ties and saturation."""
    from trigger.hls import emulate
    from trigger.hls.fast import fast_emulator
    from trigger.inputs import random_words

    fast = fast_emulator(firmware.model, firmware.stage, firmware.recipe.firmware)
    n = firmware.stage.n_constituents
    rng = np.random.default_rng(4)
    words = np.concatenate([firmware.words, random_words(4000, n, rng), edge_case_words(n, rng)])
    stress = rounding_stress(fast, words)
    assert stress["ties"] > 0 and stress["saturated"] > 0, stress
    np.testing.assert_array_equal(fast(words), emulate(firmware.project, words))
    np.testing.assert_array_equal(fast(words), reference(firmware, words))


@pytest.mark.slow
@pytest.mark.parametrize("firmware", list(CONFIGS), indirect=True)
def test_emulator_is_bit_exact(firmware: Firmware) -> None:
    """THE test: the compiled firmware, from L1 words to logits, equals the Python input stage
    and QKeras on every jet, no tolerance."""
    from trigger.inputs import random_words

    summary = firmware.summary
    # The Keras reference is itself exact only while sums fit float32; these configs do.
    assert summary["keras_float32_exact"], summary["max_accumulator_significant_bits"]
    n = firmware.stage.n_constituents
    rng = np.random.default_rng(1)
    # 1) every toy jet (train, validation and test splits: thousands of jets)
    assert len(firmware.words) >= 3000
    assert_bit_exact(firmware, firmware.words)
    # 2) random jets across the words' ranges
    assert_bit_exact(firmware, random_words(4000, n, rng))
    # 3) edge cases: phi wrap-around, saturation, one candidate, count above N, padding
    assert_bit_exact(firmware, edge_case_words(n, rng))
    # The outputs are not trivially constant.
    from trigger.hls import emulate

    out = emulate(firmware.project, firmware.words)
    assert len(np.unique(out.argmax(1))) > 1
    assert len(np.unique(out)) > 50


@pytest.mark.slow
@pytest.mark.parametrize("firmware", DEEPSETS, indirect=True)
def test_emulator_is_permutation_invariant(firmware: Firmware) -> None:
    """Candidates in any order: reordering the real ones changes no output bit."""
    from trigger.hls import emulate

    rng = np.random.default_rng(2)
    words = firmware.words[:1000]
    permuted = permute_candidates(words, firmware.stage.n_constituents, rng)
    assert not np.array_equal(permuted, words)
    np.testing.assert_array_equal(
        emulate(firmware.project, permuted), emulate(firmware.project, words)
    )


def _in_more_slots(words: np.ndarray, n: int, slots: int, rng) -> np.ndarray:
    """The same jets with `slots` candidate slots: each candidate in a random slot, the rest
    padding."""
    candidates, jets = split_words(words, n)
    spread = np.zeros((len(words), slots, 3), candidates.dtype)
    for j in range(len(words)):
        spread[j, rng.permutation(slots)[:n]] = candidates[j]
    return np.concatenate([spread.reshape(len(words), -1), jets], axis=1)


@pytest.mark.slow
@pytest.mark.parametrize("firmware", ["deepsets_n8_6bit_masked"], indirect=True)
def test_masked_firmware_gives_a_jet_the_same_logits_whatever_n_and_padding(
    firmware: Firmware,
) -> None:
    """The firmware for 8 candidates and the same student built for 32 slots, the jet's
    candidates scattered among them: the same logits, bit for bit (max pooling; a masked mean
    is the same sum divided by another N). Without the mask, empty slots change them."""
    import dataclasses

    from trigger.hls import emulate
    from trigger.taggers import build_student, copy_dense_weights, predict

    rng = np.random.default_rng(11)
    n, slots = firmware.stage.n_constituents, 32
    words = firmware.words[:2000]
    widened = _in_more_slots(words, n, slots, rng)
    stage = dataclasses.replace(firmware.stage, n_constituents=slots)

    def built_for(recipe, slots: int, source):
        data = recipe.data.model_copy(update={"n_constituents": slots})
        model = build_student(recipe.model_copy(update={"data": data}), len(data.features))
        copy_dense_weights(source, model)
        return model

    wide = built_for(firmware.recipe, slots, firmware.model)
    expected = emulate(firmware.project, words)
    assert len(np.unique(expected.argmax(1))) > 1
    np.testing.assert_array_equal(predict(wide, stage.apply_words(widened)), expected)

    arch = firmware.recipe.architecture.model_copy(update={"mask": False})
    unmasked = firmware.recipe.model_copy(update={"architecture": arch})
    narrow, wide = random_student(unmasked, seed=2), None
    wide = built_for(unmasked, slots, narrow)
    outputs = [predict(m, s.apply_words(w)) for m, s, w in
               ((narrow, firmware.stage, words), (wide, stage, widened))]  # fmt: skip
    assert not np.array_equal(*outputs)


@pytest.mark.slow
@pytest.mark.parametrize("firmware", ["deepsets_n16_8bit"], indirect=True)
def test_precisions_come_from_quantizers(firmware: Firmware) -> None:
    layers = firmware.summary["layers"]
    assert firmware.summary["input"] == "ap_fixed<12,4,AP_RND_CONV,AP_SAT>"
    assert firmware.summary["output"] == "ap_fixed<16,7,AP_RND_CONV,AP_SAT>"
    assert layers["phi_0"]["weight"] == "ap_fixed<8,1>"
    assert layers["phi_0_act"]["result"] == "ap_ufixed<8,3,AP_RND_CONV,AP_SAT>"
    # mean over 16 = 2^4: four more fractional bits, the division is an exact shift
    assert layers["pool"]["result"] == "ap_ufixed<12,3>"
    assert layers["phi_0"]["options"]["ParallelizationFactor"] == 16
    assert firmware.summary["steps"][0] == "quantize_weights"
    # hls4ml wrote what the plan says
    defines = (firmware.project / "firmware" / "defines.h").read_text()
    assert "typedef ap_fixed<12,4,AP_RND_CONV,AP_SAT,0> input_t;" in defines


def test_context_plan_adds_its_branch_exactly_and_its_arithmetic_round_trips(
    toy_file: Path, tmp_path: Path
) -> None:
    """The context block in the plan: phi_0's output saved, the mean -> dense -> ReLU added
    back in the exact sum format; the fast emulator on that arithmetic equals QKeras on toy,
    random and edge-case jets, and again after `save_arithmetic` and loading it back."""
    from trigger.hls.fast import _load_arithmetic, fast_emulator, save_arithmetic
    from trigger.hls.precision import sum_accumulation
    from trigger.inputs import random_words

    recipe = make_recipe("context_n16_7bit", toy_file)
    stage, toy_words = _toy(recipe)
    model = random_student(recipe, SEEDS["context_n16_7bit"])
    fw = Firmware(recipe, model, stage, tmp_path, {}, toy_words)
    plan = _plan(fw.model)
    add = plan.layer("context_0_add")
    assert add.source == "phi_0_act"
    exact = sum_accumulation(plan.layer("phi_0_act").result, plan.layer("context_0_act").result)
    assert add.result == exact.accum and add.accumulation == exact
    assert add.result.hls() == "ap_ufixed<8,4>"  # two ap_ufixed<7,3>: one integer bit more
    assert exact.significant_bits == 8 and 8 in plan.sum_bits() and plan.keras_float32_exact()
    kinds = [(op.kind, op.name, op.source) for op in plan.arithmetic()]
    saved = kinds.index(("save", "phi_0_act", None))
    assert kinds[saved - 1] == ("round", "phi_0_act", None)
    assert kinds[saved + 1 : saved + 5] == [
        ("mean", "context_0_pool", None),
        ("dense", "context_0", None),
        ("round", "context_0_act", None),
        ("add", "context_0_add", "phi_0_act"),
    ]
    n = fw.stage.n_constituents
    rng = np.random.default_rng(5)
    words = np.concatenate([fw.words, random_words(2000, n, rng), edge_case_words(n, rng)])
    fast = fast_emulator(fw.model, fw.stage, recipe.firmware)
    expected = reference(fw, words)
    np.testing.assert_array_equal(fast(words), expected)
    assert len(np.unique(expected.argmax(1))) > 1
    loaded = _load_arithmetic(save_arithmetic(tmp_path, plan), fw.stage)
    assert loaded.operations[saved + 4].source == "phi_0_act"
    np.testing.assert_array_equal(loaded(words), expected)


# --- contract errors (no compilation) -------------------------------------------------------


def _plan(model):
    from trigger.hls.convert import plan_student

    return plan_student(model, FirmwareConfig())


def test_lambda_layer_is_named(toy_file) -> None:
    import tensorflow as tf
    from qkeras import QActivation, quantized_bits

    x_in = tf.keras.Input((16, 3), name="input")
    x = QActivation(quantized_bits(8, 3, alpha=1), name="input_quant")(x_in)
    x = tf.keras.layers.Lambda(lambda t: tf.reduce_sum(t, axis=1), name="sum_pool")(x)
    model = tf.keras.Model(x_in, x)
    with pytest.raises(TriggerError, match=r"layer 'sum_pool' \(Lambda\) is not supported"):
        _plan(model)


def test_float_model_is_not_a_student(toy_file) -> None:
    from trigger.taggers import build_float

    model = build_float(make_recipe("deepsets_n16_8bit", toy_file), 3)
    with pytest.raises(TriggerError, match=r"layer 'input_quant' \(Activation\) is not quantized"):
        _plan(model)


def test_unsupported_quantizers_are_named(toy_file) -> None:
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    x_in = tf.keras.Input((16, 3), name="input")
    x = QActivation(quantized_bits(8, 3, alpha=1), name="input_quant")(x_in)
    bad = quantized_bits(8, 0, alpha="auto_po2")
    x = QDense(4, kernel_quantizer=bad, bias_quantizer=bad, name="phi_0")(x)
    model = tf.keras.Model(x_in, x)
    with pytest.raises(TriggerError, match=r"layer 'phi_0'.*alpha"):
        _plan(model)


def test_mean_pooling_needs_power_of_two(toy_file) -> None:
    recipe = make_recipe("deepsets_n16_8bit", toy_file)
    recipe = recipe.model_copy(
        update={"data": recipe.data.model_copy(update={"n_constituents": 12})}
    )
    with pytest.raises(TriggerError, match="power of two"):
        _plan(random_student(recipe))


# --- the stage and the command ------------------------------------------------------------


def _make_run(run_dir: Path, toy_file: Path) -> Any:
    from trigger.data.loader import load_dataset
    from trigger.taggers import build_float

    recipe = make_recipe("deepsets_n16_8bit", toy_file)
    recipe = recipe.model_copy(
        update={"firmware": recipe.firmware.model_copy(update={"emulation_jets": 400})}
    )
    run_dir.mkdir(parents=True)
    _save(random_student(recipe, seed=5), run_dir / "student.h5")
    _save(build_float(recipe, 3), run_dir / "float.h5")
    save_recipe(recipe, run_dir / "recipe.yaml")
    stage = load_dataset(recipe.data, recipe.quantization.input).input_stage
    stage.save(run_dir / "input_stage.json")
    seal(run_dir, TRAIN, {})  # a hand-made run, sealed as train-and-compress seals its own
    return recipe


@pytest.mark.slow
def test_emit_hls_stage(tmp_path: Path, toy_file: Path) -> None:
    from trigger.hls import emit_hls, emulate
    from trigger.inputs import InputStage, random_words
    from trigger.taggers import load_model

    _make_run(tmp_path / "runs" / "toy", toy_file)
    out = emit_hls(tmp_path / "runs" / "toy", tmp_path / "firmware" / "toy")
    assert out == tmp_path / "firmware" / "toy"
    emulation = json.loads((out / "emulation.json").read_text())
    assert emulation["jets"] == 400  # firmware.emulation_jets of the 800 test jets
    assert emulation["bit_exact_fraction"] == 1.0
    assert emulation["top_class_agreement"] == 1.0
    assert emulation["reference"] == "keras-float32" and emulation["failed_checks"] == []
    expected = ["build_prj.tcl", "firmware/tagger.cpp", "emulator/libemulator.so"]
    expected += ["conversion.json", "student.h5", "input_stage.json", "recipe.yaml"]
    expected += ["firmware/input_stage.h", "firmware/input_stage_params.h"]
    expected += ["float_reference/build_prj.tcl", "float_reference/firmware/tagger.cpp"]
    for name in expected:
        assert (out / name).exists(), name
    assert not list(tmp_path.glob("firmware/.toy.tmp-*"))
    assert emulation["testbench"] == {
        "jets": 400,
        "exit_code": 0,
        "printed": "bit-exact: 400 of 400 jets",
    }
    assert_testbench_proves_exactness(out, tmp_path / "copy")
    # Later stages run the emulator from the directory alone.
    words = random_words(64, 16, np.random.default_rng(0))
    student = load_model(out / "student.h5")
    x = InputStage.load(out / "input_stage.json").apply_words(words)
    np.testing.assert_array_equal(emulate(out, words), student.predict(x, verbose=0))


def test_validate_refuses_firmware_whose_exactness_checks_failed(
    tmp_path: Path, toy_file: Path
) -> None:
    """A firmware directory emit-hls completed with failed checks (kept for inspection) is
    refused by validate, exit 1, before any work: its emulation.json names what failed."""
    from trigger.artifacts import EMIT, open_artifact
    from trigger.errors import CheckFailed
    from trigger.io import write_json
    from trigger.validation.stage import validate

    run = tmp_path / "runs" / "toy"
    _make_run(run, toy_file)
    firmware = tmp_path / "fw"
    firmware.mkdir()
    write_json(firmware / "emulation.json", {
        "jets": 400, "bit_exact_fraction": 0.25, "reference": "keras-float32",
        "testbench": {"jets": 400, "exit_code": 1, "printed": "bit-exact: 100 of 400 jets"},
    })  # fmt: skip
    seal(firmware, EMIT, {"run": open_artifact(run, TRAIN).identity})
    with pytest.raises(CheckFailed) as info:
        validate(run, firmware, tmp_path / "validation")
    assert str(info.value) == (
        f"{firmware} is not proven bit-exact: bit-exact check (fraction 0.25 of 400 jets, "
        "against keras-float32) and testbench (bit-exact: 100 of 400 jets) failed "
        f"(details: {firmware / 'emulation.json'})"
    )
    assert not (tmp_path / "validation").exists()


def assert_testbench_proves_exactness(project: Path, scratch: Path) -> None:
    """The emitted C-simulation testbench, built with g++ from the project's own files, passes;
    with one weight of the firmware changed it fails, names the mismatch and exits non-zero."""
    import re

    from trigger.hls.testbench import build_testbench, run_testbench

    shutil.copytree(project, scratch)
    build_testbench(scratch)
    done = run_testbench(scratch)
    jets = len((scratch / "tb_data" / "tb_input_features.dat").read_text().splitlines())
    assert jets > 0 and done.returncode == 0, done.stdout
    assert done.stdout.strip().splitlines()[-1] == f"bit-exact: {jets} of {jets} jets"

    weights = sorted((scratch / "firmware" / "weights").glob("w*.h"))[0]
    text = weights.read_text()
    values = text.index("{")  # the array, past the header comments
    first = re.compile(r"(?<=[{ ])(-?)(0\.\d*[1-9]\d*|[1-9]\.\d+)").search(text, values)
    assert first is not None, weights
    flipped = ("" if first[1] else "-") + first[2]  # one nonzero weight changes sign
    weights.write_text(text[: first.start()] + flipped + text[first.end() :])
    build_testbench(scratch)
    done = run_testbench(scratch)
    assert done.returncode == 1, done.stdout
    assert "MISMATCH jet" in done.stdout
    assert not done.stdout.strip().endswith(f"bit-exact: {jets} of {jets} jets")


def _trigger(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("trigger")
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=env, check=False
    )


def test_cli_synth_without_tools_is_one_line(tmp_path: Path, toy_file: Path) -> None:
    run = tmp_path / "runs" / "toy"
    _make_run(run, toy_file)
    done = _trigger(
        "emit-hls", str(run), "--out", str(tmp_path / "fw"), "--synth", path="/usr/bin:/bin"
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "vivado_hls" in lines[0] and "--synth" in lines[0]
    assert not (tmp_path / "fw").exists()


def test_cli_missing_run(tmp_path: Path) -> None:
    done = _trigger("emit-hls", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert done.stderr == (
        f"trigger: error: {tmp_path / 'nope'} not found (run `trigger train-and-compress` first)\n"
    )
