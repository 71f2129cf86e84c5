"""Model builders: the layer contract the hls4ml stage relies on, invariance, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.constituents import permute_real_constituents
from trigger.config import load_recipe, recipe_from_dict
from trigger.errors import TriggerError

tf = pytest.importorskip("tensorflow")
qkeras = pytest.importorskip("qkeras")

from trigger import taggers  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"
N_FEATURES = 3


def _names_and_types(model) -> list[tuple[str, str]]:
    return [(layer.name, type(layer).__name__) for layer in model.layers]


def test_deepsets_student_layer_contract():
    recipe = recipe_from_dict({"architecture": {"phi": [8, 4], "rho": [6]}})
    model = taggers.build_student(recipe, N_FEATURES)
    assert _names_and_types(model) == [
        ("input", "InputLayer"),
        ("input_quant", "QActivation"),
        ("phi_0", "QDense"),
        ("phi_0_act", "QActivation"),
        ("phi_1", "QDense"),
        ("phi_1_act", "QActivation"),
        ("pool", "GlobalAveragePooling1D"),
        ("rho_0", "QDense"),
        ("rho_0_act", "QActivation"),
        ("output_dense", "QDense"),
        ("output", "QActivation"),
    ]
    assert model.input_shape == (None, recipe.data.n_constituents, N_FEATURES)
    assert model.output_shape == (None, 5)
    q = recipe.quantization
    assert str(model.get_layer("input_quant").quantizer) == (
        f"quantized_bits({q.input.bits},{q.input.integer},0,alpha=1)"
    )
    assert str(model.get_layer("output").quantizer) == (
        f"quantized_bits({q.output.bits},{q.output.integer},0,alpha=1)"
    )
    a = q.default.activation
    assert str(model.get_layer("phi_0_act").quantizer) == f"quantized_relu({a.bits},{a.integer})"


def test_per_layer_quantization_and_max_pooling():
    recipe = recipe_from_dict(
        {
            "architecture": {"pooling": "max"},
            "quantization": {"layers": {"rho_0": {"weight": {"bits": 6, "integer": 1}}}},
        }
    )
    model = taggers.build_student(recipe, N_FEATURES)
    assert isinstance(model.get_layer("pool"), tf.keras.layers.GlobalMaxPooling1D)
    assert (
        str(model.get_layer("rho_0").kernel_quantizer_internal) == "quantized_bits(6,1,0,alpha=1)"
    )
    assert (
        str(model.get_layer("phi_0").kernel_quantizer_internal) == "quantized_bits(8,0,0,alpha=1)"
    )


def test_quantization_off_gives_float_layers_with_the_same_names():
    quantized = taggers.build_student(recipe_from_dict({}), N_FEATURES)
    plain = taggers.build_student(recipe_from_dict({"quantization": {"enabled": False}}), 3)
    reference = taggers.build_float(recipe_from_dict({}), N_FEATURES)
    assert [n for n, _ in _names_and_types(plain)] == [n for n, _ in _names_and_types(quantized)]
    assert _names_and_types(plain) == _names_and_types(reference)
    assert not any(type(layer).__module__.startswith("qkeras") for layer in plain.layers)
    assert {t for _, t in _names_and_types(plain)} == {
        "InputLayer",
        "Activation",
        "Dense",
        "GlobalAveragePooling1D",
    }


def test_mlp_layer_contract():
    recipe = recipe_from_dict({"architecture": {"kind": "mlp", "dense": [10, 7]}})
    model = taggers.build_student(recipe, N_FEATURES)
    assert [layer.name for layer in model.layers] == [
        "input",
        "input_quant",
        "flatten",
        "dense_0",
        "dense_0_act",
        "dense_1",
        "dense_1_act",
        "output_dense",
        "output",
    ]


def test_teacher_reads_its_own_constituent_count():
    recipe = recipe_from_dict(
        {"distillation": {"teacher": {"n_constituents": 24, "architecture": {"phi": [16]}}}}
    )
    teacher = taggers.build_teacher(recipe, N_FEATURES)
    assert teacher.input_shape == (None, 24, N_FEATURES)
    assert not any(type(layer).__module__.startswith("qkeras") for layer in teacher.layers)


def test_transformer_teacher_is_permutation_invariant_and_round_trips(tmp_path):
    recipe = recipe_from_dict(
        {"distillation": {"teacher": {"architecture": {"kind": "transformer", "embed": 8}}}}
    )
    teacher = taggers.build_teacher(recipe, N_FEATURES)
    assert any(isinstance(layer, tf.keras.layers.MultiHeadAttention) for layer in teacher.layers)
    rng = np.random.default_rng(3)
    x = _jets_with_padding(32, 32, rng)
    permuted = permute_real_constituents(x, rng)
    out = teacher.predict(x, verbose=0)
    # Float attention sums in a different order after a permutation: equal to rounding.
    np.testing.assert_allclose(teacher.predict(permuted, verbose=0), out, rtol=1e-4, atol=1e-5)
    from trigger.training.fit import save_h5

    save_h5(teacher, tmp_path / "teacher.h5")
    loaded = taggers.load_model(tmp_path / "teacher.h5")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), out)


def test_setting_part_of_a_section_keeps_its_other_defaults():
    default = recipe_from_dict({}).distillation.teacher.architecture
    recipe = load_recipe(MODELS / "default.yaml", ["distillation.teacher.architecture.embed=32"])
    teacher = recipe.distillation.teacher.architecture
    assert (teacher.kind, teacher.embed, teacher.rho) == ("transformer", 32, default.rho)
    deepsets = load_recipe(
        MODELS / "default.yaml", ["distillation.teacher.architecture.kind=deepsets"]
    )
    assert (
        deepsets.distillation.teacher.architecture.rho == default.rho != deepsets.architecture.rho
    )


def test_transformer_student_is_rejected():
    with pytest.raises(TriggerError, match=r"architecture: .*teachers only"):
        recipe_from_dict({"architecture": {"kind": "transformer"}})


def _jets_with_padding(
    n_jets: int, n: int, rng: np.random.Generator, features: int = N_FEATURES
) -> np.ndarray:
    """Random jets whose last constituents are zero padding (2 to n real ones each)."""
    x = rng.normal(0, 2, (n_jets, n, features)).astype(np.float32)
    for jet, m in zip(x, rng.integers(2, n + 1, n_jets), strict=True):
        jet[m:] = 0.0
    return x


def assert_permutation_invariant(model, seed: int = 0) -> None:
    """Permuting the real (non-padded) constituents of each jet leaves the output bit-identical."""
    rng = np.random.default_rng(seed)
    _, n, features = model.input_shape
    x = _jets_with_padding(64, n, rng, features)
    permuted = permute_real_constituents(x, rng)
    assert not np.array_equal(permuted, x)
    out = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.predict(permuted, verbose=0), out)
    assert np.unique(out).size > 1


def _randomise(model, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    for layer in taggers.dense_layers(model):
        layer.set_weights(
            [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()]
        )
    taggers.quantize_weights_in_place(model)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_quantized_deepsets_is_permutation_invariant(pooling):
    recipe = recipe_from_dict({"architecture": {"pooling": pooling}})
    model = taggers.build_student(recipe, N_FEATURES)
    _randomise(model)
    assert_permutation_invariant(model)


def test_save_and_load_round_trip(tmp_path):
    model = taggers.build_student(recipe_from_dict({}), N_FEATURES)
    _randomise(model)
    path = tmp_path / "student.h5"
    from trigger.training.fit import save_h5

    save_h5(model, path)
    loaded = taggers.load_model(path)
    assert _names_and_types(loaded) == _names_and_types(model)
    x = np.random.default_rng(2).normal(0, 1, (16, 16, N_FEATURES)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_load_model_missing_file_is_a_trigger_error(tmp_path):
    with pytest.raises(TriggerError, match="model not found"):
        taggers.load_model(tmp_path / "nope.h5")


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_recipes_load_and_build(path):
    recipe = load_recipe(path)
    model = taggers.build_student(recipe, len(recipe.data.features))
    assert model.output_shape == (None, 5)
    assert model.layers[1].name == "input_quant"


def test_sum_pooling_is_rejected():
    with pytest.raises(TriggerError, match=r"architecture\.pooling"):
        recipe_from_dict({"architecture": {"pooling": "sum"}})


def _context_recipe(**architecture):
    return recipe_from_dict(
        {
            "architecture": {"kind": "context", "phi": [8, 6, 4], "rho": [6], **architecture},
            "quantization": {"layers": {"context_0": {"weight": {"bits": 6, "integer": 1}}}},
        }
    )


def test_context_student_layer_contract_and_float_twin():
    recipe = _context_recipe(context_blocks=2)
    model = taggers.build_student(recipe, N_FEATURES)
    block = [
        ("context_{b}_pool", "GlobalAveragePooling1D"),
        ("context_{b}", "QDense"),
        ("context_{b}_act", "QActivation"),
        ("context_{b}_expand", "Reshape"),
        ("context_{b}_repeat", "UpSampling1D"),
        ("context_{b}_add", "Add"),
    ]
    expected = [("input", "InputLayer"), ("input_quant", "QActivation")]
    for i in range(3):
        expected += [(f"phi_{i}", "QDense"), (f"phi_{i}_act", "QActivation")]
        if i < 2:
            expected += [(name.format(b=i), kind) for name, kind in block]
    assert _names_and_types(model)[: len(expected)] == expected
    add = model.get_layer("context_0_add")
    assert [t.node.layer.name for t in add.input] == ["phi_0_act", "context_0_repeat"]
    assert model.get_layer("context_0").output_shape == (None, 8)
    assert model.get_layer("context_1_repeat").output_shape == (None, 16, 6)
    assert (
        str(model.get_layer("context_0").kernel_quantizer_internal)
        == "quantized_bits(6,1,0,alpha=1)"
        != str(model.get_layer("context_1").kernel_quantizer_internal)
    )
    twin = taggers.build_float(recipe, N_FEATURES)
    assert [n for n, _ in _names_and_types(twin)] == [n for n, _ in _names_and_types(model)]
    assert [layer.name for layer in taggers.dense_layers(twin)] == [
        layer.name for layer in taggers.dense_layers(model)
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": {"kind": "context", "phi": [8], "context_blocks": 1}}, "context_blocks"),
        (
            {"architecture": {"kind": "context", "phi": [8, 4], "context_blocks": 2}},
            r"context_blocks \(2\) must be smaller",
        ),
        (
            {"architecture": {"kind": "context", "pooling": "max"}, "data": {"n_constituents": 24}},
            "averages over 24 constituents",
        ),
        (
            {"architecture": {"phi": [8, 4]}, "quantization": {"layers": {"context_0": {}}}},
            "names 'context_0'",
        ),
    ],
)
def test_context_shapes_the_firmware_cannot_take_are_refused(change, message):
    with pytest.raises(TriggerError, match=message):
        recipe_from_dict(change)


def test_quantized_context_is_permutation_invariant_and_round_trips(tmp_path):
    model = taggers.build_student(_context_recipe(), N_FEATURES)
    _randomise(model)
    assert_permutation_invariant(model)
    from trigger.training.fit import save_h5

    save_h5(model, tmp_path / "student.h5")
    loaded = taggers.load_model(tmp_path / "student.h5")
    assert _names_and_types(loaded) == _names_and_types(model)
    x = _jets_with_padding(16, 16, np.random.default_rng(2))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_context_dense_layers_are_pruned_like_phi():
    import tensorflow_model_optimization as tfmot

    from trigger.training import pruning

    model = taggers.build_student(_context_recipe(context_blocks=2), N_FEATURES)
    kernel_shapes = [k.shape for k in pruning.prunable_kernels(model)]
    assert (8, 8) in kernel_shapes and (6, 6) in kernel_shapes  # context_0, context_1
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, 0)
    wrapped = pruning.wrap_for_pruning(model, schedule)
    pruned = {layer.name for layer in wrapped.layers if hasattr(layer, "pruning_vars")}
    assert {"prune_low_magnitude_context_0", "prune_low_magnitude_context_1"} <= pruned
