"""What a recipe or a `--set` value must be: refused in one line before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_outputs import assert_one_line_error, trigger
from trigger.config import ArchitectureConfig, load_recipe, recipe_from_dict
from trigger.errors import TriggerError

MODELS = Path(__file__).resolve().parents[1] / "models"
DEFAULT = MODELS / "default.yaml"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("description=a: b: c", "not valid YAML"),
        ("architecture.phi=[8", "not valid YAML"),
        ("description=!!python/object/apply:os.getcwd []", "not valid YAML"),
        ("training.epochs=true", "training.epochs"),
        ("training.epochs=100000000000000000000000", "training.epochs"),
        ("training.learning_rate=.inf", "training.learning_rate"),
        ("distillation.alpha=.nan", "distillation.alpha"),
        ("architecture.phi=[8, false]", "architecture.phi"),
        ("name=../outside", "plain directory name"),
        ("name=runs/x", "plain directory name"),
        ("name=.hidden", "plain directory name"),
        ("quantization.layers={phi_7: {}}", "'phi_7'"),
    ],
)
def test_bad_values_are_refused_before_work(override: str, expected: str) -> None:
    with pytest.raises(TriggerError, match=expected) as error:
        load_recipe(DEFAULT, [override])
    assert "\n" not in str(error.value)


def test_duplicate_keys_are_refused(tmp_path) -> None:
    recipe = tmp_path / "twice.yaml"
    recipe.write_text("training:\n  epochs: 3\ntraining:\n  epochs: 5\n")
    with pytest.raises(TriggerError, match="key 'training' is given twice"):
        load_recipe(recipe)


def test_plain_names_and_existing_layers_are_accepted() -> None:
    recipe = load_recipe(DEFAULT, ["name=my_run-2.b", "quantization.layers={rho_0: {}}"])
    assert recipe.name == "my_run-2.b"
    assert "rho_0" in recipe.quantization.layers


def test_layer_names_match_the_built_student() -> None:
    pytest.importorskip("qkeras")
    from trigger import taggers

    for architecture in ({"phi": [8, 4], "rho": [6]}, {"kind": "mlp", "dense": [8, 8]}):
        recipe = recipe_from_dict({"architecture": architecture})
        model = taggers.build_student(recipe, 3)
        dense = [layer.name for layer in model.layers if "Dense" in type(layer).__name__]
        assert tuple(dense) == ArchitectureConfig(**architecture).dense_layer_names()


def test_python_tags_never_run(tmp_path) -> None:
    marker = tmp_path / "ran"
    command = f"description=!!python/object/apply:os.system ['touch {marker}']"
    result = trigger("recipe", "show", str(DEFAULT), "--set", command, cwd=tmp_path)
    assert_one_line_error(result, "not valid YAML")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["architecture.mask=true"], "architecture.mask needs the 'present' feature"),
        (["architecture.mask=true", "architecture.kind=context",
          'data.features=["pt", "deta", "dphi", "present"]'],
         "architecture.mask needs kind deepsets: a context block adds"),
        (["architecture.mask=true", "architecture.kind=mlp",
          'data.features=["pt", "present"]'], "an MLP has no pooling"),
        (["architecture.mask=true", 'data.features=["pt", "present"]',
          "quantization.method=hgq", "pruning.enabled=false"], "use quantization.method qkeras"),
    ],
)  # fmt: skip
def test_masked_pooling_the_firmware_cannot_take_is_refused(overrides, expected) -> None:
    with pytest.raises(TriggerError, match=expected) as error:
        load_recipe(DEFAULT, overrides)
    assert "\n" not in str(error.value)


def test_masked_students_have_no_phi_biases_and_read_present_as_one() -> None:
    pytest.importorskip("qkeras")
    import numpy as np

    from tests.constituents import edge_case_words, stage_for_random_words
    from trigger import taggers

    features = ["pt", "deta", "present"]
    recipe = load_recipe(DEFAULT, ["architecture.mask=true", f"data.features={features}"])
    model = taggers.build_student(recipe, len(features))
    assert [layer.use_bias for layer in taggers.dense_layers(model)] == [
        False,
        False,
        True,
        True,
        True,
    ]
    stage = stage_for_random_words(8, tuple(features), 10, 3)
    words = edge_case_words(8, np.random.default_rng(0))
    candidates = words[:, : 3 * 8].reshape(-1, 8, 3)
    present = stage.apply_words(words)[..., 2]
    np.testing.assert_array_equal(present, (candidates[..., 0] > 0).astype(np.float32))
