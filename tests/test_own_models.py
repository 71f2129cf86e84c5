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

import re
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
        names = {3: ("deta", "dphi", "pt"), 4: ("pt", "deta", "dphi", "count"), 8: FEATURES}
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
    Hand(8, 8, 8, "max", bias=True, strings=False, input_name="in_q"),
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
    spread_weights(model, seed, bias=hand.bias, sparse=hand.sparse)
    return model


def spread_weights(model: Any, seed: int, bias: bool = True, sparse: bool = False) -> None:
    """Kernels 1.5 times their initial values (outputs reach the formats' edges), biases
    uniform in [-1, 1) when `bias`, and half of each kernel zeroed when `sparse`."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "QDense":
            weights = [w * 1.5 for w in layer.get_weights()]
            if bias:
                weights[1] = rng.uniform(-1, 1, weights[1].shape).astype("float32")
            if sparse:
                weights[0] = np.where(rng.random(weights[0].shape) < 0.5, 0, weights[0])
            layer.set_weights(weights)


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
        ("negative_integer", "layer 'f0_relu': QKeras cannot run quantized_relu with integer=-1"),
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
    relu = {"float_relu": "relu", "negative_integer": "quantized_relu(6,-1)"}
    x = QActivation(relu.get(change, "quantized_relu(6,2)"), name="f0_relu")(x)
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


# --- exactness beyond float32: wide logits, the reference, failed checks ---------------------

WIDE = Hand(8, 3, 8, "mean", bias=True, strings=False)
WIDE_STAGE = stage_for_random_words(WIDE.n, ("deta", "dphi", "pt"), 12, INPUT_INTEGER)


def build_wide(seed: int = 0, logit_bits: int = 34) -> Any:
    """A small Deep Sets with ap_fixed<34,17> logits: its logits and last sums need up to 28
    significant bits, more than float32's 24 (Keras's float32 predict rounds them)."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.layers.Input((WIDE.n, WIDE.features), name="constituents")
    x = QActivation(quantized_bits(12, INPUT_INTEGER, alpha=1), name="q_in")(inputs)
    narrow, wide = quantized_bits(6, 0, alpha=1), quantized_bits(16, 6, alpha=1)
    x = QDense(4, kernel_quantizer=narrow, bias_quantizer=narrow, name="f0")(x)
    x = QActivation(quantized_relu(8, 3), name="f0_relu")(x)
    x = tf.keras.layers.GlobalAveragePooling1D(name="pool")(x)
    x = QDense(5, kernel_quantizer=wide, bias_quantizer=wide, name="logits")(x)
    logits = QActivation(quantized_bits(logit_bits, 16, alpha=1), name="out")(x)
    model = tf.keras.Model(inputs, logits)
    rng = np.random.default_rng(seed)
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights(
        [rng.uniform(-64, 64, kernel.shape), rng.uniform(-64, 64, bias.shape)]
    )
    return model


def _emit_own(
    model: Any, stage: Any, work: Path, name: str, jets_per_class: int = 40, **options: Any
) -> Path:
    from tests.conftest import write_synthetic_file
    from trigger.hls import emit_model

    _save(model, work / f"{name}.h5")
    stage.save(work / f"{name}.json")
    data = work / "jets.h5"
    if not data.exists():
        write_synthetic_file(data, jets_per_class)
    return emit_model(
        work / f"{name}.h5", work / f"{name}.json", work / name, data_path=data, **options
    )


@pytest.fixture(scope="module")
def wide_firmware(tmp_path_factory) -> Path:
    return _emit_own(build_wide(), WIDE_STAGE, tmp_path_factory.mktemp("wide"), "wide")


@pytest.mark.slow
def test_wide_logits_are_exact_in_both_engines_and_checked_against_the_integer_plan(
    wide_firmware, tmp_path: Path
) -> None:
    """Logits wider than float32: `trigger emulate` gives the same exact values with either
    engine, and emit-hls proved the firmware against the plan's exact arithmetic, not against
    Keras's rounded float32 sums (which differ on some jets)."""
    import json

    import h5py

    from trigger.emulate import emulate_file, engine
    from trigger.taggers import load_model, predict

    fw = wide_firmware
    emulation = json.loads((fw / "emulation.json").read_text())
    assert emulation["reference"] == "integer-plan"
    assert emulation["bit_exact_fraction"] == 1.0 and emulation["failed_checks"] == []
    assert emulation["testbench"]["exit_code"] == 0
    assert "bit_exact_fraction" in emulation["keras_float32"]
    conversion = json.loads((fw / "conversion.json").read_text())
    assert conversion["output"] == "ap_fixed<34,17,AP_RND_CONV,AP_SAT>"
    assert not conversion["keras_float32_exact"]

    logits = {}
    for name in ("hls", "fast"):
        out = emulate_file(fw, fw.parent / "jets.h5", tmp_path / f"{name}.h5", engine_name=name,
                           progress=False)  # fmt: skip
        with h5py.File(out) as f:
            logits[name] = f["logits"][:]
    np.testing.assert_array_equal(logits["hls"], logits["fast"])
    words = jets(WIDE, np.random.default_rng(7))
    hls, fast = engine(fw, "hls")(words), engine(fw, "fast")(words)
    assert hls.dtype == np.float64
    np.testing.assert_array_equal(hls, fast)
    # Not a vacuous case: float32 cannot hold these logits, and Keras's float32 sums round.
    assert np.any(hls != hls.astype(np.float32))
    keras = predict(load_model(fw / "student.h5"), WIDE_STAGE.apply_words(words))
    assert 0.5 < np.mean(np.all(keras == hls, axis=1)) < 1


@pytest.mark.slow
def test_a_failed_exactness_check_exits_1_and_keeps_the_firmware_out_of_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reference the firmware does not meet (here one output moved by one): emit-hls raises
    CheckFailed naming the checks and emulation.json, keeps the sealed directory for
    inspection (without spending --rtl on it), and `trigger emulate` refuses it with exit 1."""
    import json
    import subprocess
    import sys

    from trigger.artifacts import EMIT, open_artifact
    from trigger.errors import CheckFailed
    from trigger.hls import stage

    exact_reference = stage.exact_reference

    def one_output_off(*args: Any) -> tuple[np.ndarray, str]:
        values, name = exact_reference(*args)
        values = values.copy()
        values[0, 0] += 1.0
        return values, name

    monkeypatch.setattr(stage, "exact_reference", one_output_off)
    rtl = bool(shutil.which("verilator") and shutil.which("yosys"))
    with pytest.raises(CheckFailed) as info:
        _emit_own(build(MODELS[5]), MODELS[5].stage, tmp_path, "fw", jets_per_class=20, rtl=rtl)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "fw" / "emulation.json") in message
    assert "bit-exact check" in message and "testbench (bit-exact: " in message
    open_artifact(tmp_path / "fw", EMIT)  # complete and sealed, for inspection
    assert not (tmp_path / "fw" / "rtl").exists()
    emulation = json.loads((tmp_path / "fw" / "emulation.json").read_text())
    assert len(emulation["failed_checks"]) == 2
    assert emulation["testbench"]["exit_code"] == 1

    trigger = str(Path(sys.executable).with_name("trigger"))
    done = subprocess.run([trigger, "emulate", "fw", "--data", "jets.h5", "--out", "p.h5"],
                          cwd=tmp_path, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("trigger: fw is not proven bit-exact: bit-exact check")
    assert done.stderr.count("\n") == 1 and not (tmp_path / "p.h5").exists()


@pytest.mark.slow
def test_an_rtl_mismatch_exits_1_and_keeps_the_rtl_for_inspection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When `--rtl`'s simulation differs from the reference, emit-hls still completes and seals
    the directory with rtl/hardware.json in it, records the failed check in emulation.json and
    raises CheckFailed naming it; the firmware is then refused downstream. (The simulation is
    replaced by one that reports a mismatch: the real one is bit-exact on every model here.)"""
    import json

    import trigger.rtl
    from trigger.artifacts import EMIT, open_artifact
    from trigger.errors import CheckFailed
    from trigger.hls.stage import require_proven
    from trigger.io import write_json

    def mismatching_rtl(model: Any, stage: Any, out_dir: Path, *args: Any, **kwargs: Any):
        out_dir.mkdir(parents=True)
        bit_exact = {"jets": 10, "reference": "keras-float32", "bit_exact_fraction": 0.7}
        write_json(out_dir / "hardware.json", {"bit_exact": bit_exact})
        msg = f"{out_dir}: RTL simulation differs from the student on 3 of 10 jets"
        raise CheckFailed(msg)

    monkeypatch.setattr(trigger.rtl, "check_tools", lambda: None)
    monkeypatch.setattr(trigger.rtl, "emit_rtl", mismatching_rtl)
    with pytest.raises(CheckFailed) as info:
        _emit_own(build(MODELS[0]), MODELS[0].stage, tmp_path, "fw", jets_per_class=20, rtl=True)
    message = str(info.value)
    assert "\n" not in message and "RTL simulation (fraction 0.7 of 10 jets" in message
    open_artifact(tmp_path / "fw", EMIT)  # complete and sealed
    assert (tmp_path / "fw" / "rtl" / "hardware.json").is_file()
    emulation = json.loads((tmp_path / "fw" / "emulation.json").read_text())
    assert emulation["bit_exact_fraction"] == 1.0 and emulation["testbench"]["exit_code"] == 0
    assert emulation["failed_checks"] == [
        "RTL simulation (fraction 0.7 of 10 jets, rtl/hardware.json)"
    ]
    with pytest.raises(CheckFailed, match="RTL simulation"):
        require_proven(tmp_path / "fw")


def test_values_wider_than_a_double_are_refused_before_compiling(tmp_path: Path) -> None:
    from trigger.config import FirmwareConfig
    from trigger.hls.fast import fast_emulator
    from trigger.hls.stage import write_project

    model = build_wide(logit_bits=60)
    stage = WIDE_STAGE
    message = "layer 'out' result ap_fixed<60,17,AP_RND_CONV,AP_SAT> needs 60 significant bits"
    with pytest.raises(TriggerError, match=re.escape(message)):
        fast_emulator(model, stage, FirmwareConfig())
    with pytest.raises(TriggerError, match=re.escape(message)):
        write_project(model, stage, tmp_path, FirmwareConfig())
    assert not (tmp_path / "emulator").exists()


@pytest.mark.parametrize(
    ("contract", "problem"),
    [
        (
            "[8, 3]",
            "a JSON object with n_constituents, features, center, shift, input_bits, "
            "input_integer is needed, not an array",
        ),
        ('"stage"', "is needed, not a string"),
        ("{", "not JSON: "),
        ('{"n_constituents": 8}', "missing features, center, shift, input_bits, input_integer"),
        (None, "unknown colour"),
        ({"n_constituents": "8"}, 'n_constituents must be a whole number, not "8"'),
        ({"n_constituents": True}, "n_constituents must be a whole number, not true"),
        ({"n_constituents": 0}, "n_constituents must be at least 1, not 0"),
        ({"features": "pt"}, 'features must be a list of feature names, not "pt"'),
        ({"center": [0, 1.5, 0]}, "center must be a list of whole numbers, not [0, 1.5, 0]"),
        ({"shift": None}, "shift must be a list of whole numbers, not null"),
        ({"input_bits": 12.5}, "input_bits must be a whole number, not 12.5"),
    ],
)
def test_malformed_inputs_contract_is_one_line(contract: Any, problem: str, tmp_path: Path) -> None:
    """`emit-hls --model --inputs FILE`: a FILE that is no complete contract of the right types
    is refused in one line, exit 2, before the model or the data are read."""
    import json

    from trigger.hls import emit_model

    good = stage_for_random_words(8, ("deta", "dphi", "pt"), 12, INPUT_INTEGER)
    good.save(tmp_path / "good.json")
    if contract is None:
        contract = json.loads((tmp_path / "good.json").read_text()) | {"colour": "red"}
    elif isinstance(contract, dict):
        contract = json.loads((tmp_path / "good.json").read_text()) | contract
    text = contract if isinstance(contract, str) else json.dumps(contract)
    (tmp_path / "bad.json").write_text(text)
    (tmp_path / "mine.h5").write_bytes(b"")  # never opened: the contract is refused first
    with pytest.raises(TriggerError) as info:
        emit_model(tmp_path / "mine.h5", tmp_path / "bad.json", tmp_path / "fw",
                   data_path=tmp_path / "none.h5")  # fmt: skip
    assert str(info.value).startswith(f"{tmp_path / 'bad.json'}: not an input-stage contract (")
    assert problem in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "fw").exists()


def test_inputs_given_a_json_list_exits_2_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "mine.json").write_text("[1, 2, 3]")
    (tmp_path / "mine.h5").write_bytes(b"")
    trigger = str(Path(sys.executable).with_name("trigger"))
    args = ["emit-hls", "--model", "mine.h5", "--inputs", "mine.json", "--data", "x.h5"]
    done = subprocess.run([trigger, *args, "--out", "fw"], cwd=tmp_path, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("trigger: error: mine.json: not an input-stage contract (a JSON")
    assert done.stderr.count("\n") == 1


# --- a hand-written global-context tagger (an Add of a branch) ------------------------------

CONTEXT = Hand(16, 4, 7, "max", bias=True, strings=False)


def build_context(seed: int = 0, tile: str = "upsample") -> Any:
    """A JEDI-linear style tagger: per-candidate f0, then the candidates' mean through a dense
    layer and a ReLU of its own format, repeated onto every candidate and added (operands in
    the other order than trigger's builder) before f1, max pooling and a jet layer.
    `tile` "reshape_only" leaves out the repeat, which emit-hls refuses."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    tf.keras.utils.set_random_seed(seed)
    layers = tf.keras.layers
    weights = quantized_bits(7, 1, alpha=1)

    def dense(width: int, name: str):
        return QDense(width, kernel_quantizer=weights, bias_quantizer=weights, name=name)

    inputs = layers.Input((CONTEXT.n, CONTEXT.features), name="constituents")
    x = QActivation(quantized_bits(11, INPUT_INTEGER, alpha=1), name="q_in")(inputs)
    x = QActivation(quantized_relu(7, 2), name="f0_relu")(dense(8, "f0")(x))
    c = layers.GlobalAveragePooling1D(name="ctx_mean")(x)
    c = QActivation(quantized_relu(6, 3), name="ctx_relu")(dense(8, "ctx")(c))
    c = layers.Reshape((1, 8), name="ctx_row")(c)
    if tile == "upsample":
        c = layers.UpSampling1D(CONTEXT.n, name="ctx_tile")(c)
    x = layers.Add(name="mix")([c, x])
    x = QActivation(quantized_relu(7, 2), name="f1_relu")(dense(6, "f1")(x))
    x = layers.GlobalMaxPooling1D(name="jet")(x)
    x = QActivation(quantized_relu(7, 2), name="g0_relu")(dense(8, "g0")(x))
    x = QActivation(quantized_bits(12, 5, alpha=1), name="scores")(dense(5, "logits")(x))
    model = tf.keras.Model(inputs, x)
    spread_weights(model, seed)
    return model


@pytest.mark.slow
# hls4ml's link_existing_project leaves hls4ml_config.yml open (utils/link.py).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_hand_written_context_tagger_firmware_is_bit_exact(tmp_path: Path) -> None:
    """`emit_model` on the hand-written context tagger: emulator and testbench bit-exact on
    test jets; the emulator also on random jets and the input stage's edge cases; the project
    opens, compiles and predicts with hls4ml's `link_existing_project`."""
    import json

    from trigger.hls import emulate

    model = build_context()
    out = _emit_own(model, CONTEXT.stage, tmp_path, "context")
    emulation = json.loads((out / "emulation.json").read_text())
    assert emulation["bit_exact_fraction"] == 1.0 and emulation["failed_checks"] == []
    assert emulation["testbench"]["exit_code"] == 0
    layers = json.loads((out / "conversion.json").read_text())["layers"]
    # ap_ufixed<7,2> + ap_ufixed<6,3>: the exact sum, one integer bit more than the wider
    assert layers["mix"]["result"] == "ap_ufixed<9,4>"
    x = jets(CONTEXT, np.random.default_rng(4))
    emulated = emulate(out, x)
    np.testing.assert_array_equal(emulated, expected(CONTEXT, model, x))
    assert len(np.unique(emulated.argmax(1))) > 1
    # hls4ml opens the project itself (stock layers: Resize, Merge) and its bridge agrees.
    import hls4ml

    linked = hls4ml.converters.link_existing_project(str(out))
    linked.compile()
    features = CONTEXT.stage.apply_words(x[:200])
    np.testing.assert_array_equal(linked.predict(features).reshape(200, -1), emulated[:200])


def test_context_without_its_repeat_is_refused_by_name() -> None:
    """An Add that broadcasts a (1, w) row is not the Reshape -> UpSampling1D -> Add form."""
    from trigger.config import FirmwareConfig
    from trigger.hls.convert import plan_student

    with pytest.raises(TriggerError, match=r"layer 'ctx_row' \(Reshape\): emit-hls supports"):
        plan_student(build_context(tile="reshape_only"), FirmwareConfig())


def test_an_add_of_the_unquantized_input_is_refused_by_name() -> None:
    """The firmware sees the input quantizer's output only: an Add of the raw input is named."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    from trigger.config import FirmwareConfig
    from trigger.hls.convert import plan_student

    inputs = tf.keras.layers.Input((8, 3))
    x = QActivation(quantized_bits(8, 2, alpha=1), name="q")(inputs)
    bits = quantized_bits(6, 0, alpha=1)
    x = QDense(3, kernel_quantizer=bits, bias_quantizer=bits, name="f0")(x)
    x = QActivation("quantized_relu(6,2)", name="f0_relu")(x)
    x = tf.keras.layers.Add(name="skip")([inputs, x])
    model = tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling1D()(x))
    with pytest.raises(TriggerError, match=r"layer 'skip' \(Add\): .* after the input quantizer"):
        plan_student(model, FirmwareConfig())
