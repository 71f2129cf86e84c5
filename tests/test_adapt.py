"""`trigger adapt`'s frozen footprint: zeros stay zero, survivors stay nonzero and on their
quantizers' grids, fine-tuning moves only constants; rehearsal mixes the stated share.

The command itself (a tiny run adapted, emitted and refused in one line) is tested in
tests/test_outputs.py, on the trained run that file shares.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import write_synthetic_file
from trigger.errors import TriggerError

pytest.importorskip("qkeras")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """An 8-bit Deep Sets recipe and toy jets through its input stage."""
    from tests.test_hls import make_recipe
    from trigger.data.loader import load_dataset

    data = write_synthetic_file(tmp_path_factory.mktemp("adapt") / "toy.h5", 60)
    recipe = make_recipe("deepsets_n16_8bit", data)  # weights ap_fixed<8,1>: step 1/128
    return recipe, load_dataset(recipe.data, recipe.quantization.input, data)


STEP = 2.0**-7


def pruned_student(recipe):
    """The recipe's student, quantized, half of every kernel and one bias per layer zero."""
    from tests.test_hls import random_student
    from trigger import taggers

    model = random_student(recipe, seed=3)
    taggers.quantize_weights_in_place(model)
    rng = np.random.default_rng(3)
    for layer in taggers.dense_layers(model):
        kernel, *bias = layer.get_weights()
        kernel = np.where(rng.random(kernel.shape) < 0.5, 0.0, kernel).astype(np.float32)
        if bias:
            bias[0][0] = 0.0
        layer.set_weights([kernel, *bias])
    return model


def _weights(model):
    from trigger import taggers

    return [w for layer in taggers.dense_layers(model) for w in layer.get_weights()]


def test_fine_tuning_keeps_every_zero_and_every_survivor_on_its_grid(toy) -> None:
    from trigger.training.adapt import AdaptSettings, fine_tune, frozen_pattern

    recipe, data = toy
    model = pruned_student(recipe)
    before = _weights(model)
    pattern = frozen_pattern(model)
    settings = AdaptSettings(epochs=3, learning_rate=0.05, patience=3, batch_size=32)
    fine_tune(model, data.train, data.validation, settings, pattern, verbose=0)
    after = _weights(model)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(a != 0, b != 0)  # the same zero pattern, exactly
    from trigger import taggers

    for layer in taggers.dense_layers(model):  # on the grid: quantizing changes nothing
        kernel = layer.get_weights()[0]
        assert np.array_equal(np.asarray(layer.kernel_quantizer_internal(kernel)), kernel)


def test_a_survivor_that_rounds_to_zero_keeps_one_step_of_its_sign(toy) -> None:
    from trigger import taggers
    from trigger.training.adapt import frozen_pattern, project_onto

    model = pruned_student(toy[0])
    before = _weights(model)
    pattern = frozen_pattern(model)
    layer = taggers.dense_layers(model)[0]
    kernel, *bias = layer.get_weights()
    alive = np.argwhere(kernel != 0)
    (i, j), (k, m) = alive[0], alive[1]
    kernel[i, j], kernel[k, m] = 1e-6, -1e-6  # both would round to zero
    layer.set_weights([kernel, *bias])
    project_onto(model, pattern)
    projected = layer.get_weights()[0]
    assert projected[i, j] == STEP and projected[k, m] == -STEP
    for a, b in zip(before, _weights(model), strict=True):
        assert np.array_equal(a != 0, b != 0)


def test_rehearsal_mixes_the_stated_share_of_nominal_jets(toy) -> None:
    from trigger.training.adapt import _mixed

    _, data = toy
    rng = np.random.default_rng(0)
    mixed = _mixed(data.test, data.train, 0.5, rng)
    assert len(mixed) == len(data.test) + round(0.5 * len(data.test))
    assert np.array_equal(mixed.x[: len(data.test)], data.test.x)
    assert _mixed(data.test, data.train, 0.0, rng) is data.test


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"learning_rate": 0.0}, "--learning-rate"),
        ({"rehearsal": -1.0}, "--rehearsal"),
        ({"anchor": -0.1}, "--anchor"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message) -> None:
    from trigger.training.adapt import AdaptSettings

    with pytest.raises(TriggerError, match=message):
        AdaptSettings(**settings)


def test_a_layer_that_would_widen_an_accumulator_is_pulled_back_to_the_deployed_types(toy):
    from trigger import taggers
    from trigger.training.adapt import (
        firmware_types,
        frozen_pattern,
        hold_firmware_types,
        project_onto,
    )

    recipe = toy[0]
    deployed, model = pruned_student(recipe), pruned_student(recipe)
    pattern = frozen_pattern(model)
    layer = taggers.dense_layers(model)[1]  # 32 inputs: their sum can outgrow the format
    kernel, *bias = layer.get_weights()
    layer.set_weights([np.where(kernel != 0, np.sign(kernel) * 0.99, 0.0), *bias])
    project_onto(model, pattern)
    assert firmware_types(model, recipe.firmware) != firmware_types(deployed, recipe.firmware)
    assert hold_firmware_types(model, deployed, pattern, recipe.firmware) == [layer.name]
    assert firmware_types(model, recipe.firmware) == firmware_types(deployed, recipe.firmware)
    for a, b in zip(_weights(deployed), _weights(model), strict=True):
        assert np.array_equal(a != 0, b != 0)
