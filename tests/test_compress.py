"""Training stage: QAT grids, pruning sparsity, distillation, switches, CLI end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from trigger.config import load_recipe, recipe_from_dict
from trigger.data.loader import load_dataset
from trigger.errors import TriggerError

tf = pytest.importorskip("tensorflow")
pytest.importorskip("qkeras")

from click.testing import CliRunner  # noqa: E402

from tests.test_taggers import assert_permutation_invariant  # noqa: E402
from trigger import taggers  # noqa: E402
from trigger.cli import cli  # noqa: E402
from trigger.training.distill import distillation_loss  # noqa: E402
from trigger.training.pruning import sparsity  # noqa: E402
from trigger.training.stage import train_and_compress  # noqa: E402
from trigger.training.student import train_float, train_student  # noqa: E402
from trigger.training.teacher import cached_teacher  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TRIGGER = Path(sys.executable).with_name("trigger")
ARTIFACTS = (
    "teacher.h5",
    "teacher_input_stage.json",
    "float.h5",
    "student.h5",
    "recipe.yaml",
    "input_stage.json",
    "history.json",
    "metrics.json",
)
# Small and quick on the toy data: a few seconds per model on 2 cores.
FAST = (
    "training.epochs=8",
    "training.batch_size=64",
    "training.learning_rate=0.01",
    "training.patience=3",
    "distillation.teacher.epochs=6",
    "distillation.teacher.batch_size=64",
    "distillation.teacher.learning_rate=0.01",
    "distillation.teacher.architecture.embed=16",
    "distillation.teacher.architecture.blocks=1",
    "distillation.teacher.architecture.rho=[32]",
)


def _fast_recipe(**sections):
    tree: dict = {}
    for text in FAST:
        key, value = text.split("=", 1)
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    for section, values in sections.items():
        tree[section] = tree.get(section, {}) | values
    return recipe_from_dict(tree)


@pytest.fixture(scope="module")
def default_run(synthetic_data, tmp_path_factory) -> tuple[Path, str]:
    """models/default.yaml (QAT + pruning + distillation) through the CLI, in process."""
    out = tmp_path_factory.mktemp("runs") / "default"
    args = ["train-and-compress", str(ROOT / "models/default.yaml"), "--data", str(synthetic_data)]
    args += ["--out", str(out), *(a for s in FAST for a in ("--set", s))]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
def test_cli_writes_all_artifacts_and_metrics(default_run):
    out, output = default_run
    for name in ARTIFACTS:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for model in ("teacher", "float", "student"):
        assert {"accuracy", "auc", "parameters"} <= set(metrics[model])
        assert set(metrics[model]["auc"]) == {"g", "q", "W", "Z", "t"}
        assert 0.0 <= metrics[model]["accuracy"] <= 1.0
    assert {"sparsity", "nonzero_parameters"} <= set(metrics["student"])
    # The toy classes are easy: every model must have learned something.
    assert min(metrics[m]["accuracy"] for m in ("teacher", "float", "student")) > 0.4
    history = json.loads((out / "history.json").read_text())
    assert set(history) == {"teacher", "float", "student"}
    assert "val_loss" in history["student"]
    saved = load_recipe(out / "recipe.yaml")
    assert saved.training.epochs == 8
    assert Path(saved.data.path).is_file()
    assert "Epoch 1/" in output  # one progress line per epoch
    assert "accuracy" in output and "student" in output  # the closing table


@pytest.mark.slow
def test_student_weights_lie_on_their_quantizer_grids(default_run):
    out, _ = default_run
    recipe = load_recipe(out / "recipe.yaml")
    student = taggers.load_model(out / "student.h5")
    checked = 0
    for layer in taggers.dense_layers(student):
        q = recipe.quantization.for_layer(layer.name)
        for values, fmt, quantizer in (
            (layer.get_weights()[0], q.weight, layer.kernel_quantizer_internal),
            (layer.get_weights()[1], q.bias, layer.bias_quantizer_internal),
        ):
            assert str(quantizer) == f"quantized_bits({fmt.bits},{fmt.integer},0,alpha=1)"
            k = values.astype(np.float64) * 2.0 ** (fmt.bits - 1 - fmt.integer)
            np.testing.assert_array_equal(k, np.round(k))
            assert k.min() >= -(2 ** (fmt.bits - 1)) and k.max() <= 2 ** (fmt.bits - 1) - 1
            checked += 1
    a = recipe.architecture
    assert checked == 2 * (len(a.phi) + len(a.rho) + 1)  # kernel and bias, + output_dense


@pytest.mark.slow
def test_pruned_student_reaches_the_target_sparsity(default_run):
    out, _ = default_run
    recipe = load_recipe(out / "recipe.yaml")
    student = taggers.load_model(out / "student.h5")
    achieved = sparsity(student)
    assert abs(achieved - recipe.pruning.target_sparsity) <= 0.01
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["student"]["sparsity"] == pytest.approx(achieved)
    nonzero = sum(int(np.count_nonzero(w)) for w in student.get_weights())
    assert metrics["student"]["nonzero_parameters"] == nonzero < student.count_params()
    # The output layer is not pruned (see trigger.training.pruning.PRUNED_LAYER_PREFIXES).
    assert np.mean(student.get_layer("output_dense").get_weights()[0] == 0) < 0.2


@pytest.mark.slow
def test_trained_student_is_permutation_invariant(default_run):
    out, _ = default_run
    student = taggers.load_model(out / "student.h5")
    assert_permutation_invariant(student)


@pytest.mark.slow
def test_teacher_is_cached_and_reused(default_run):
    out, _ = default_run
    recipe = load_recipe(out / "recipe.yaml")
    lines: list[str] = []
    teacher, data, folder = cached_teacher(
        recipe, Path(recipe.data.path), out.parent / ".teachers", lines.append
    )
    assert lines == [f"reusing teacher {folder}"]
    assert teacher.input_shape[1] == recipe.distillation.teacher.n_constituents
    assert data.train.x.shape[1] == recipe.distillation.teacher.n_constituents
    # The teacher depends only on the data it sees: a student over 8 constituents shares it.
    other_student = load_recipe(out / "recipe.yaml", ["data.n_constituents=8"])
    assert (
        cached_teacher(
            other_student, Path(recipe.data.path), out.parent / ".teachers", lines.append
        )[2]
        == folder
    )


@pytest.mark.slow
def test_everything_switched_off(synthetic_data, tmp_path):
    recipe = _fast_recipe(
        quantization={"enabled": False},
        pruning={"enabled": False},
        distillation={"enabled": False},
    )
    out = train_and_compress(recipe, synthetic_data, tmp_path / "run", verbose=0)
    assert not (out / "teacher.h5").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["teacher"] is None
    student = taggers.load_model(out / "student.h5")
    types = {type(layer).__name__ for layer in student.layers}
    assert "Dense" in types and not any(t.startswith("Q") for t in types)
    # No pruning: no forced zeros in float weights.
    assert sparsity(student) == 0.0
    assert not (tmp_path / ".teachers").exists()


@pytest.mark.slow
def test_same_seed_same_student_and_qat_alone_forces_no_zeros(synthetic_data):
    recipe = _fast_recipe(
        pruning={"enabled": False}, distillation={"enabled": False}, training={"epochs": 2}
    )
    data = load_dataset(recipe.data, recipe.quantization.input, synthetic_data)
    first, second = (train_student(recipe, data, verbose=0).model for _ in range(2))
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert type(first.get_layer("phi_0")).__name__ == "QDense"
    # Pruning off: only weights that round to 0 on the 8-bit grid, far from the 50% target.
    assert sparsity(first) < 0.1


@pytest.mark.slow
def test_student_starts_from_its_float_twin(synthetic_data):
    recipe = _fast_recipe(
        pruning={"enabled": False},
        distillation={"enabled": False},
        # One step too small to move a weight off its 8-bit grid point.
        training={"epochs": 1, "learning_rate": 1e-12, "init_from_float": True},
    )
    data = load_dataset(recipe.data, recipe.quantization.input, synthetic_data)
    reference = train_float(recipe, data, verbose=0).model
    student = train_student(recipe, data, verbose=0, float_reference=reference).model
    for twin, layer in zip(
        taggers.dense_layers(reference), taggers.dense_layers(student), strict=True
    ):
        expected = layer.kernel_quantizer_internal(twin.get_weights()[0]).numpy()
        np.testing.assert_array_equal(layer.get_weights()[0], expected, err_msg=layer.name)
    with pytest.raises(TriggerError, match="init_from_float"):
        train_student(recipe, data, verbose=0)


def test_distillation_loss():
    hard_only = distillation_loss(4.0, 0.0, distill=True)
    plain = distillation_loss(1.0, 0.0, distill=False)
    rng = np.random.default_rng(0)
    labels = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 8)]
    student = rng.normal(0, 2, (8, 5)).astype(np.float32)
    teacher = rng.normal(0, 2, (8, 5)).astype(np.float32)
    y = np.concatenate([labels, teacher], axis=1)
    np.testing.assert_allclose(hard_only(y, student), plain(labels, student), rtol=1e-6)

    temperature, alpha = 3.0, 0.6
    mixed = distillation_loss(temperature, alpha, distill=True)(y, student).numpy()

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p_t, p_s = softmax(teacher / temperature), softmax(student / temperature)
    kl = np.sum(p_t * np.log(p_t / p_s), axis=1)
    ce = -np.sum(labels * np.log(softmax(student)), axis=1)
    np.testing.assert_allclose(mixed, (1 - alpha) * ce + alpha * temperature**2 * kl, rtol=1e-5)
    # The soft term vanishes when the student copies the teacher.
    copy = distillation_loss(temperature, 1.0, distill=True)(y, teacher).numpy()
    np.testing.assert_allclose(copy, 0.0, atol=1e-5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.epochz=3", "unknown key 'training.epochz'"),
        ("training.epochs=many", "training.epochs"),
        ("quantization.default.weight.bits=64", "quantization.default.weight.bits"),
    ],
)
def test_bad_recipe_is_one_line_and_exit_2(tmp_path, override, message):
    if not TRIGGER.is_file():
        found = shutil.which("trigger")
        assert found, "the trigger console script is not installed"
    exe = TRIGGER if TRIGGER.is_file() else Path(shutil.which("trigger"))
    args = [str(exe), "train-and-compress", str(ROOT / "models/default.yaml")]
    result = subprocess.run(
        [*args, "--out", str(tmp_path / "run"), "--set", override],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trigger: error:"), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "run").exists()


def test_bad_key_in_a_recipe_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("architecture:\n  phii: [8]\n")
    result = CliRunner().invoke(cli, ["train-and-compress", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: unknown key 'architecture.phii'" in result.output


def test_missing_data_file(tmp_path):
    args = ["train-and-compress", str(ROOT / "models/default.yaml")]
    result = CliRunner().invoke(cli, [*args, "--data", str(tmp_path / "none.h5")])
    assert result.exit_code == 2
    assert "data file not found" in result.output
