"""Bit-exact firmware for QKeras Deep Sets written by hand, as a user brings them.

Each model is built directly with QKeras (not by `trigger.taggers`): its own layer names, its
own input-quantizer name, activations given as objects or as strings, with and without bias,
mean and max pooling, 4 to 8 bits, N 8 and 16, one with half of its weights zero, behind input
stages computing 3 to 7 features (all seven, the principal-axis frame among them, in one).
Every one is converted, compiled and compared with the Python input stage + QKeras on random
jets' L1 words and the input stage's edge cases (phi wrap-around, saturated words, one
candidate, padding); two also run as Verilog in Verilator.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.constituents import edge_case_words, stage_for_random_words
from tests.test_hls import _save
from trigger.errors import TriggerError
from trigger.inputs import FEATURES, random_words

pytest.importorskip("qkeras")


@dataclass(frozen=True)
class Hand:
    """One hand-written Deep Sets."""

    n: int
    features: int
    bits: int
    pooling: str
    bias: bool
    strings: bool  # activations as QKeras strings, e.g. "quantized_relu(6,2)"
    sparse: bool = False  # half of every kernel zero
    input_name: str = "q_in"

    @property
    def stage(self) -> Any:
        """The input stage in front of it: as many features as it takes, each feature used."""
        names = {3: ("deta", "dphi", "pt"), 4: ("pt", "deta", "dphi", "count"), 7: FEATURES}
        return stage_for_random_words(self.n, names[self.features], self.bits + 4, INPUT_INTEGER)

    @property
    def id(self) -> str:
        extras = ["bias" if self.bias else "nobias", "str" if self.strings else "obj"]
        extras += ["sparse"] if self.sparse else []
        return f"n{self.n}-{self.bits}bit-{self.pooling}-{'-'.join(extras)}"


MODELS = [
    Hand(8, 3, 4, "mean", bias=True, strings=True, input_name="inputs_quantized"),
    Hand(16, 4, 6, "max", bias=False, strings=False),
    Hand(16, 3, 8, "mean", bias=False, strings=True, sparse=True),
    Hand(8, 7, 8, "max", bias=True, strings=False, input_name="in_q"),
    Hand(16, 3, 6, "mean", bias=True, strings=False),
    Hand(8, 3, 4, "max", bias=False, strings=False, input_name="x_q"),
]
# Verilator builds take a minute or more for the wider models: two small ones, both poolings.
IN_VERILATOR = [MODELS[0], MODELS[5]]
INPUT_INTEGER = 2  # inputs quantized_bits(bits + 4, 2): saturate at +-4


def build(hand: Hand, seed: int = 0) -> Any:
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    b = hand.bits

    def relu():
        return f"quantized_relu({b},2)" if hand.strings else quantized_relu(b, 2)

    def dense(width: int, name: str):
        return QDense(
            width,
            kernel_quantizer=quantized_bits(b, 0, alpha=1),
            bias_quantizer=quantized_bits(b, 1, alpha=1) if hand.bias else None,
            use_bias=hand.bias,
            name=name,
        )

    layers = tf.keras.layers
    inputs = layers.Input((hand.n, hand.features), name="constituents")
    x = QActivation(quantized_bits(b + 4, INPUT_INTEGER, alpha=1), name=hand.input_name)(inputs)
    for i, width in enumerate((12, 8)):
        x = QActivation(relu(), name=f"f{i}_relu")(dense(width, f"f{i}")(x))
    pool = layers.GlobalAveragePooling1D if hand.pooling == "mean" else layers.GlobalMaxPooling1D
    x = pool(name="sum_up")(x)
    x = QActivation(relu(), name="g0_relu")(dense(10, "g0")(x))
    x = dense(5, "logits")(x)
    out = "quantized_bits(12,5,alpha=1)" if hand.strings else quantized_bits(12, 5, alpha=1)
    model = tf.keras.Model(inputs, QActivation(out, name="scores")(x))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "QDense":
            weights = [w * 1.5 for w in layer.get_weights()]
            if hand.bias:
                weights[1] = rng.uniform(-1, 1, weights[1].shape).astype("float32")
            if hand.sparse:
                weights[0] = np.where(rng.random(weights[0].shape) < 0.5, 0, weights[0])
            layer.set_weights(weights)
    return model


def jets(hand: Hand, rng: np.random.Generator) -> np.ndarray:
    """Port rows: random jets and the input stage's edge cases."""
    return np.concatenate([edge_case_words(hand.n, rng), random_words(2000, hand.n, rng)])


def expected(hand: Hand, model: Any, words: np.ndarray) -> np.ndarray:
    from trigger.taggers import predict

    return predict(model, hand.stage.apply_words(words))


@pytest.fixture(scope="module", params=MODELS, ids=[m.id for m in MODELS])
def converted(request, tmp_path_factory) -> tuple[Hand, Any, Path]:
    from trigger.config import FirmwareConfig
    from trigger.hls.stage import write_project

    hand = request.param
    model = build(hand)
    project = tmp_path_factory.mktemp(hand.id)
    write_project(model, hand.stage, project, FirmwareConfig())
    return hand, model, project


@pytest.mark.slow
def test_hand_written_deepsets_firmware_is_bit_exact(converted) -> None:
    from trigger.hls import emulate

    hand, model, project = converted
    words = jets(hand, np.random.default_rng(1))
    if hand.sparse:
        kernels = [w for w in model.get_weights() if w.ndim == 2]
        assert 0.4 < np.mean([np.mean(k == 0) for k in kernels]) < 0.6
    np.testing.assert_array_equal(emulate(project, words), expected(hand, model, words))
    # The vectorised emulator too: the same bits as the compiled C++.
    from trigger.config import FirmwareConfig
    from trigger.hls.fast import fast_emulator

    fast = fast_emulator(model, hand.stage, FirmwareConfig())
    np.testing.assert_array_equal(fast(words), emulate(project, words))


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("verilator") and shutil.which("yosys")), reason="needs verilator, yosys"
)
@pytest.mark.parametrize("hand", IN_VERILATOR, ids=[m.id for m in IN_VERILATOR])
def test_hand_written_deepsets_verilog_equals_the_emulator(hand: Hand, tmp_path: Path) -> None:
    """The RTL harness takes the same words (wrap-around, saturation, padding) as the emulator."""
    from da4ml.cmvm.types import Pipeline

    from trigger.config import FirmwareConfig
    from trigger.hls import emulate
    from trigger.hls.stage import write_project
    from trigger.rtl import emit_rtl, simulate

    model = build(hand)
    x = jets(hand, np.random.default_rng(2))
    write_project(model, hand.stage, tmp_path / "hls", FirmwareConfig())
    figures = emit_rtl(model, hand.stage, tmp_path / "rtl", words=x, yosys=False)
    assert figures["bit_exact"]["bit_exact_fraction"] == 1.0
    pipe = Pipeline.load(tmp_path / "rtl" / "model" / "pipeline.json")
    cycles = figures["latency_cycles"]
    binary = tmp_path / "rtl" / "sim" / "obj_dir" / "Vtb"
    stream = simulate.run(binary, simulate.PortCoding.of(pipe), x, cycles + 2)
    np.testing.assert_array_equal(stream[cycles : cycles + len(x)], emulate(tmp_path / "hls", x))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("alpha", "layer 'f0': quantized_bits with alpha=0.5 (use alpha=1) has no exact"),
        ("float_relu", "layer 'f0_relu': 'relu' is not a QKeras quantizer (use quantized_bits"),
    ],
)
def test_unsupported_settings_name_the_layer_and_the_choice(change: str, message: str) -> None:
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    from trigger.config import FirmwareConfig
    from trigger.hls.convert import plan_student

    def dense(width: int, name: str, alpha: float = 1):
        weights = quantized_bits(6, 0, alpha=alpha)
        return QDense(width, kernel_quantizer=weights, bias_quantizer=weights, name=name)

    inputs = tf.keras.layers.Input((8, 3))
    x = QActivation(quantized_bits(8, 2, alpha=1), name="q")(inputs)
    x = dense(4, "f0", alpha=0.5 if change == "alpha" else 1)(x)
    x = QActivation("relu" if change == "float_relu" else "quantized_relu(6,2)", name="f0_relu")(x)
    x = tf.keras.layers.GlobalAveragePooling1D()(x)
    model = tf.keras.Model(inputs, dense(5, "logits")(x))
    with pytest.raises(TriggerError) as info:
        plan_student(model, FirmwareConfig())
    assert message in str(info.value)


@pytest.mark.slow
def test_emit_hls_takes_a_model_file_written_outside_the_project(tmp_path: Path) -> None:
    """`trigger emit-hls --model FILE --inputs STAGE` from the command line: the same
    conversion, emulator and testbench as for a run, and a refusal naming the layer."""
    import json
    import subprocess
    import sys

    import tensorflow as tf

    from tests.conftest import write_synthetic_file
    from trigger.hls import emulate

    hand = MODELS[0]
    model = build(hand)
    _save(model, tmp_path / "mine.h5")
    hand.stage.save(tmp_path / "mine.json")
    write_synthetic_file(tmp_path / "jets.h5", 100)
    trigger = str(Path(sys.executable).with_name("trigger"))
    args = ["emit-hls", "--model", "mine.h5", "--inputs", "mine.json", "--data", "jets.h5"]
    done = subprocess.run([trigger, *args, "--out", "fw"], cwd=tmp_path, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    emulation = json.loads((tmp_path / "fw" / "emulation.json").read_text())
    assert emulation["bit_exact_fraction"] == 1.0 and emulation["jets"] == 100
    assert emulation["testbench"]["exit_code"] == 0
    x = jets(hand, np.random.default_rng(4))
    np.testing.assert_array_equal(emulate(tmp_path / "fw", x), expected(hand, model, x))

    inputs = tf.keras.layers.Input((hand.n, 3))
    normalised = tf.keras.layers.BatchNormalization(name="norm")(model.layers[1](inputs))
    _save(tf.keras.Model(inputs, model.layers[2](normalised)), tmp_path / "bad.h5")
    args[2] = "bad.h5"
    done = subprocess.run([trigger, *args, "--out", "fw2"], cwd=tmp_path, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("trigger: error: layer 'norm' (BatchNormalization)")
    assert "QDense" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "fw2").exists()
