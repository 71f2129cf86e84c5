"""Lottery pruning: masks that only grow, survivors rewound exactly, zeros that stay zero."""

from __future__ import annotations

import numpy as np
import pytest

from trigger.config import recipe_from_dict
from trigger.data.loader import load_dataset
from trigger.errors import TriggerError

tf = pytest.importorskip("tensorflow")
pytest.importorskip("qkeras")

from trigger import taggers  # noqa: E402
from trigger.training.distill import Teacher  # noqa: E402
from trigger.training.fit import arrays, fit, seed_everything, training_settings  # noqa: E402
from trigger.training.pruning import (  # noqa: E402
    prune_smallest,
    pruned_layers,
    sparsity,
    train_lottery,
)
from trigger.training.student import train_student  # noqa: E402

LOTTERY = {"method": "lottery", "target_sparsity": 0.75, "rounds": 2, "rewind_epoch": 1}


def _recipe(**sections):
    tree = {
        "training": {"epochs": 3, "batch_size": 64, "learning_rate": 0.01, "patience": 3},
        "distillation": {"enabled": False},
        "pruning": LOTTERY,
    }
    for section, values in sections.items():
        tree[section] = tree.get(section, {}) | values
    return recipe_from_dict(tree)


def test_prune_smallest_keeps_what_is_pruned_and_takes_the_smallest_survivors() -> None:
    kernel = np.array([[0.5, -0.1], [0.05, 2.0], [-0.3, 0.0]], np.float32)
    mask = np.array([[1, 1], [1, 1], [1, 0]], np.float32)  # 0.0 pruned before
    half = prune_smallest(kernel, mask, 0.5)
    # The pruned weight stays pruned; then 0.05 and -0.1, the smallest survivors.
    np.testing.assert_array_equal(half, [[1, 0], [0, 1], [1, 0]])
    assert prune_smallest(kernel, half, 0.0).sum() == half.sum()  # never unpruned
    assert prune_smallest(kernel, mask, 1.0).sum() == 0


def test_lottery_rewinds_survivors_exactly_and_reaches_the_target_per_layer(
    synthetic_data,
) -> None:
    recipe = _recipe()
    data = load_dataset(recipe.data, recipe.quantization.input, synthetic_data)
    settings = training_settings(recipe, verbose=0)
    seed_everything(recipe.training.seed)
    model = taggers.build_student(recipe, data.train.x.shape[-1])
    starts, rewound = [], {}

    class AfterRewindEpoch(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == LOTTERY["rewind_epoch"]:
                rewound["weights"] = self.model.get_weights()

    def train_round(model, initial_epoch, monitor_from, extra):
        starts.append((initial_epoch, model.get_weights()))
        watch = [AfterRewindEpoch()] if not starts[1:] else []
        return fit(model, arrays(data.train), arrays(data.validation), settings,
                   callbacks=[*extra, *watch], monitor_from_epoch=monitor_from,
                   initial_epoch=initial_epoch)  # fmt: skip

    train_lottery(model, train_round, recipe.pruning)
    assert [epoch for epoch, _ in starts] == [0, 1, 1]  # dense, then one retraining per round
    names = [w.name for w in model.weights]
    layers = {layer.kernel.name: layer for layer in pruned_layers(model)}
    final = {name: w for name, w in zip(names, model.get_weights(), strict=True)}
    zeros_before = None
    for _, weights in starts[1:]:
        for name, start, early in zip(names, weights, rewound["weights"], strict=True):
            if name not in layers:  # biases and the output layer: rewound, never pruned
                np.testing.assert_array_equal(start, early, err_msg=name)
                continue
            survivors = start != 0
            np.testing.assert_array_equal(start[survivors], early[survivors], err_msg=name)
            assert (final[name][~survivors] == 0).all(), f"{name}: a pruned weight came back"
        zeros = {n: w == 0 for n, w in zip(names, weights, strict=True) if n in layers}
        if zeros_before:  # each round prunes more, keeping what is pruned
            assert all((zeros[n] >= zeros_before[n]).all() for n in zeros)
            assert sum(z.sum() for z in zeros.values()) > sum(
                z.sum() for z in zeros_before.values()
            )
        zeros_before = zeros
    for name in layers:
        size = final[name].size
        assert np.sum(final[name] == 0) >= round(LOTTERY["target_sparsity"] * size), name


def test_a_lottery_student_keeps_its_zeros_through_qat_and_distillation(synthetic_data) -> None:
    recipe = _recipe(
        training={"epochs": 2}, pruning={"rewind_epoch": 0}, distillation={"enabled": True}
    )
    data = load_dataset(recipe.data, recipe.quantization.input, synthetic_data)
    # Any network's logits are soft targets: a float twin, untrained, sees the same jets.
    teacher = Teacher(taggers.build_float(recipe, data.train.x.shape[-1]), data)
    student = train_student(recipe, data, teacher, verbose=0).model
    assert sparsity(student) == pytest.approx(LOTTERY["target_sparsity"], abs=0.02)
    for layer in pruned_layers(student):
        kernel = layer.get_weights()[0]
        # quantized in place: the zeros are the firmware's zeros
        grid = layer.kernel_quantizer_internal(kernel).numpy()
        np.testing.assert_array_equal(kernel, grid)
        assert np.mean(kernel == 0) >= LOTTERY["target_sparsity"] - 1 / kernel.size


@pytest.mark.parametrize(
    ("pruning", "message"),
    [
        ({"rounds": 0}, "pruning.rounds"),
        ({"rewind_epoch": 3}, "pruning.rewind_epoch 3 is not before the end of the student's"),
        ({"target_sparsity": 1.0}, "pruning.target_sparsity"),
        ({"method": "random"}, "pruning.method"),
    ],
)
def test_bad_lottery_settings_are_one_line_errors(pruning, message) -> None:
    with pytest.raises(TriggerError) as error:
        _recipe(pruning=pruning)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_sweep_searches_over_pruning_methods(tmp_path) -> None:
    from tests.test_sweep import write_sweep
    from trigger.config import load_recipe
    from trigger.sweep import load_sweep

    space = {"pruning.method": {"choices": ["magnitude", "lottery"]},
             "pruning.target_sparsity": {"choices": [0.5, 0.9]}}  # fmt: skip
    spec, _ = load_sweep(write_sweep(tmp_path, space=space))
    assert spec.space["pruning.method"].grid() == ["magnitude", "lottery"]
    drawn = load_recipe(spec.recipe, ['pruning.method="lottery"', "pruning.target_sparsity=0.9"])
    assert drawn.pruning.method == "lottery" and drawn.pruning.target_sparsity == 0.9


@pytest.mark.parametrize("method", ["magnitude", "lottery"])
def test_a_wide_network_is_pruned_to_a_target_count_of_nonzero_weights(
    synthetic_data, method
) -> None:
    target = 120
    recipe = _recipe(
        training={"epochs": 2},
        architecture={"phi": [16, 16], "rho": [16]},
        pruning={"method": method, "target_nonzero": target, "rewind_epoch": 0},
    )
    data = load_dataset(recipe.data, recipe.quantization.input, synthetic_data)
    student = train_student(recipe, data, verbose=0).model
    kernels = [layer.get_weights()[0] for layer in pruned_layers(student)]
    nonzero = sum(int(np.count_nonzero(k)) for k in kernels)
    # Every layer at the same sparsity: the count is met to a weight per layer (rounding).
    assert abs(nonzero - target) <= len(kernels), nonzero


def test_a_nonzero_target_the_architecture_cannot_meet_is_refused_before_training(
    synthetic_data, tmp_path
) -> None:
    from click.testing import CliRunner

    from tests.test_outputs import TINY, write_tiny_recipe
    from trigger.cli import cli

    recipe = write_tiny_recipe(tmp_path / "tiny.yaml", synthetic_data)
    weights = 3 * 4 + 4 * 4  # TINY: 3 features -> phi [4] -> rho [4], output layer unpruned
    assert TINY["architecture"] == {"phi": [4], "rho": [4]}
    args = ["train-and-compress", str(recipe), "--out", str(tmp_path / "run"),
            "--set", f"pruning.target_nonzero={weights}"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"trigger: error: pruning.target_nonzero {weights} is not below the {weights} weights "
        "pruning acts on in this architecture: widen it or lower the target"
    ]
    assert "teacher" not in result.output and not (tmp_path / "run").exists()


def test_the_shipped_pruning_sweep_draws_only_valid_recipes(tmp_path) -> None:
    import itertools
    import json

    from tests.test_sweep import load_shipped_sweep
    from trigger.config import load_recipe

    spec, _, tree = load_shipped_sweep("pruning", tmp_path)
    grid = {k: spec.space[k].grid() for k in tree["space"]}
    combinations = list(itertools.product(*grid.values()))
    assert len(combinations) == tree["trials"]
    for values in combinations:
        sets = [f"{k}={json.dumps(v)}" for k, v in zip(grid, values, strict=True)]
        assert load_recipe(spec.recipe, sets).pruning.enabled


@pytest.mark.parametrize("kind", ["deepsets", "mlp"])
def test_pruned_neurons_leave_a_narrower_student_exact_in_keras_and_in_the_traced_logic(
    synthetic_data, kind
) -> None:
    from tests.constituents import stage_for_random_words
    from tests.test_rtl import jets, reference
    from trigger.rtl import trace_student
    from trigger.training.pruning import without_pruned_neurons

    recipe = _recipe(
        training={"epochs": 2},
        architecture={"kind": kind, "phi": [8, 6], "rho": [8], "dense": [12, 8]},
        pruning={"structure": "neurons", "target_sparsity": 0.5, "rounds": 1, "rewind_epoch": 1},
    )
    data = load_dataset(recipe.data, recipe.quantization.input, synthetic_data)
    settings = training_settings(recipe, verbose=0)
    seed_everything(recipe.training.seed)
    wide = taggers.build_student(recipe, data.train.x.shape[-1])

    def train_round(model, initial_epoch, monitor_from, extra):
        return fit(model, arrays(data.train), arrays(data.validation), settings,
                   callbacks=extra, monitor_from_epoch=monitor_from,
                   initial_epoch=initial_epoch)  # fmt: skip

    _, masks = train_lottery(wide, train_round, recipe.pruning)
    narrow = without_pruned_neurons(wide, recipe, masks)
    widths = {layer.name: layer.units for layer in taggers.dense_layers(narrow)}
    expected = {"phi_0": 4, "phi_1": 3, "rho_0": 4} if kind == "deepsets" else {"dense_0": 6}
    assert expected.items() <= widths.items() and widths["output_dense"] == 5
    for layer in pruned_layers(wide):  # a pruned neuron: no incoming weight, no bias
        kernel, bias = layer.get_weights()
        gone = masks[layer.name].bias == 0
        assert not kernel[:, gone].any() and not bias[gone].any()
    np.testing.assert_array_equal(taggers.predict(narrow, data.test.x),
                                  taggers.predict(wide, data.test.x))  # fmt: skip
    taggers.quantize_weights_in_place(narrow)
    port = recipe.quantization.input
    n, features = recipe.data.n_constituents, tuple(recipe.data.features)
    stage = stage_for_random_words(n, features, port.bits, port.integer)
    words = jets(stage.n_constituents, 500, seed=2)
    logic = trace_student(narrow, stage, recipe.firmware).comb.predict(words.astype(np.float64))
    np.testing.assert_array_equal(logic, reference(narrow, stage, words))


@pytest.mark.parametrize(
    ("pruning", "architecture", "message"),
    [
        ({"structure": "neurons"}, {}, "prunes in lottery rounds: set pruning.method: lottery"),
        ({"structure": "neurons", "method": "lottery", "target_nonzero": 10}, {},
         "pruning.target_nonzero counts weights"),
        ({"structure": "neurons", "method": "lottery"}, {"kind": "context", "phi": [8, 8]},
         "cannot narrow a context tagger"),
    ],
)  # fmt: skip
def test_neuron_pruning_settings_the_firmware_cannot_take_are_refused(
    pruning, architecture, message
) -> None:
    with pytest.raises(TriggerError, match=message):
        recipe_from_dict({"pruning": pruning, "architecture": architecture})


def test_a_student_pruned_by_neurons_comes_out_narrower_and_on_its_grid(synthetic_data) -> None:
    recipe = _recipe(
        training={"epochs": 2},
        architecture={"phi": [8, 8], "rho": [8]},
        pruning={"structure": "neurons", "target_sparsity": 0.75, "rounds": 1, "rewind_epoch": 0},
    )
    data = load_dataset(recipe.data, recipe.quantization.input, synthetic_data)
    student = train_student(recipe, data, verbose=0).model
    widths = [layer.units for layer in taggers.dense_layers(student)]
    assert widths == [2, 2, 2, 5]
    for layer in taggers.dense_layers(student):
        kernel = layer.get_weights()[0]
        np.testing.assert_array_equal(kernel, layer.kernel_quantizer_internal(kernel).numpy())
