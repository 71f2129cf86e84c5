"""Distillation with consistent augmentation: mirrored words, the same jets for teacher and
student in every step, the recipe options that steer it."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trigger.config import recipe_from_dict
from trigger.data.loader import Dataset, JetSample
from trigger.errors import TriggerError
from trigger.inputs import (
    CANDIDATE_WORDS,
    ETA_WORD,
    PHI_WORD,
    fit_input_stage,
    random_words,
    raw_features,
    split_words,
    to_words,
    wrapped_dphi,
)
from trigger.training.distill import ConsistentBatches, Teacher, augmented, reflect

FEATURES = ("pt", "deta", "dphi", "dr2", "count")
BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench_distill.py"


def _physical_jets(jets: int, n: int, rng: np.random.Generator):
    """Float (pT, eta, phi) of candidates and jets, phi spanning the wrap-around at +-pi."""
    pt = rng.uniform(0.5, 200, (jets, n))
    jet_eta, jet_phi = rng.uniform(-2.3, 2.3, (jets, 1)), rng.uniform(-np.pi, np.pi, (jets, 1))
    eta = jet_eta + rng.uniform(-0.4, 0.4, (jets, n))
    phi = np.angle(np.exp(1j * (jet_phi + rng.uniform(-0.4, 0.4, (jets, n)))))
    phi[0, 0], jet_phi[1, 0] = np.pi, -np.pi  # exactly on the wrap: words +720 and -720
    return np.stack([pt, eta, phi], -1), np.concatenate([pt.sum(1, keepdims=True), jet_eta,
                                                         jet_phi], 1)  # fmt: skip


def _words(candidates: np.ndarray, jets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    words = np.stack([to_words(candidates[..., k], w) for k, w in enumerate(CANDIDATE_WORDS)], -1)
    jet = np.stack([to_words(jets[:, k], w) for k, w in enumerate(CANDIDATE_WORDS)], -1)
    return words, np.concatenate([jet, np.full((len(jet), 1), 20)], axis=1)


@pytest.mark.parametrize(("symmetry", "column"), [("reflect_eta", 1), ("reflect_phi", 2)])
def test_reflected_words_are_the_words_of_the_mirrored_jet(symmetry: str, column: int) -> None:
    candidates, jets = _physical_jets(200, 8, np.random.default_rng(1))
    words, jet = _words(candidates, jets)
    mirrored = candidates.copy(), jets.copy()
    mirrored[0][..., column] *= -1
    mirrored[1][:, column] *= -1
    everyone = np.ones(len(words), bool)
    for got, expected in zip(
        reflect(words, jet, symmetry, everyone), _words(*mirrored), strict=True
    ):
        np.testing.assert_array_equal(got, expected)


def test_a_reflection_mirrors_the_input_stage_about_the_jet_axis() -> None:
    """The raw features of mirrored words: deta -> -deta, dphi -> -dphi (wrapped), the rest
    unchanged; mirroring twice gives the words back; padding stays padding."""
    rows = random_words(500, 16, np.random.default_rng(2))
    words, jet = split_words(rows, 16)
    raw = raw_features(words, jet, FEATURES)
    which = np.random.default_rng(3).random(len(rows)) < 0.5
    flips = {"reflect_eta": which, "reflect_phi": ~which}
    flipped = augmented(words, jet, flips)
    seen = raw_features(*flipped, FEATURES)
    deta = np.where(which[:, None], -raw[..., 1], raw[..., 1])
    dphi = np.where(~which[:, None], wrapped_dphi(-raw[..., 2], 0), raw[..., 2])
    np.testing.assert_array_equal(seen[..., 1], deta)
    np.testing.assert_array_equal(seen[..., 2], dphi)
    for k in (0, 3, 4):  # pt, dr2, count
        np.testing.assert_array_equal(seen[..., k], raw[..., k])
    np.testing.assert_array_equal(flipped[0][..., 0] == 0, words[..., 0] == 0)
    for back, given in zip(augmented(*flipped, flips), (words, jet), strict=True):
        np.testing.assert_array_equal(back, given)


def test_reflection_saturates_only_at_the_bottom_of_a_word() -> None:
    words = np.array([[[4, ETA_WORD.low, PHI_WORD.low]]])
    jet = np.array([[4, ETA_WORD.low, PHI_WORD.low, 1]])
    for symmetry, column in (("reflect_eta", 1), ("reflect_phi", 2)):
        mirrored, mirrored_jet = reflect(words, jet, symmetry, np.array([True]))
        high = CANDIDATE_WORDS[column].high
        assert mirrored[0, 0, column] == high and mirrored_jet[0, column] == high


class FingerprintTeacher:
    """A stand-in teacher whose logits are a fixed random projection of its whole input."""

    def __init__(self, n_constituents: int) -> None:
        rng = np.random.default_rng(7)
        self.weights = rng.normal(size=(n_constituents * len(FEATURES), 5))

    def predict(self, x: np.ndarray, batch_size: int = 0, verbose: int = 0) -> np.ndarray:
        return x.reshape(len(x), -1).astype(np.float64) @ self.weights


def _views(jets: int, student_n: int, teacher_n: int) -> tuple[Dataset, Dataset]:
    """The same jets at the student's N and the teacher's, as the loader gives them."""
    rng = np.random.default_rng(4)
    words, jet = split_words(random_words(jets, teacher_n, rng), teacher_n)
    y = np.eye(5, dtype=np.float32)[rng.integers(0, 5, jets)]
    weight = rng.uniform(0.5, 2, jets).astype(np.float32)
    stage = fit_input_stage(words[:, :student_n], jet, FEATURES, 10, 3)
    teacher_stage = dataclasses.replace(stage, n_constituents=teacher_n)
    views = []
    for n, input_stage in ((student_n, stage), (teacher_n, teacher_stage)):
        sample = JetSample(words[:, :n], jet, y, weight, {})
        sample.x = input_stage.apply(sample.candidates, sample.jet)
        views.append(Dataset(sample, sample, sample, input_stage))
    return views[0], views[1]


def test_teacher_and_student_see_the_same_mirrored_jets_in_every_step() -> None:
    student, view = _views(100, 4, 8)
    teacher = FingerprintTeacher(8)
    augment = ("reflect_eta", "reflect_phi")
    batches = ConsistentBatches(student, Teacher(teacher, view), augment, 32, seed=5)
    assert len(batches) == math.ceil(100 / 32)
    plain = teacher.predict(view.train.x)
    per_epoch = []
    for _ in range(2):
        mirrored = np.zeros(100, bool)
        for index in range(len(batches)):
            x, y, weight = batches[index]
            rows, flips = batches.jets(index)
            # The student's input and the teacher's logits, both of the same mirrored jets.
            words = augmented(student.train.candidates[rows], student.train.jet[rows], flips)
            np.testing.assert_array_equal(x, student.input_stage.apply(*words))
            words = augmented(view.train.candidates[rows], view.train.jet[rows], flips)
            taught = teacher.predict(view.input_stage.apply(*words))
            np.testing.assert_allclose(y[:, 5:], taught, rtol=1e-6, atol=1e-4)
            np.testing.assert_array_equal(y[:, :5], student.train.y[rows])
            np.testing.assert_array_equal(weight, student.train.weight[rows])
            moved = flips["reflect_eta"] | flips["reflect_phi"]
            np.testing.assert_array_equal(x[~moved], student.train.x[rows[~moved]])
            assert not np.isclose(y[moved, 5:], plain[rows[moved]]).all(axis=1).any()
            mirrored[rows] = moved
        assert 0 < mirrored.sum() < 100
        per_epoch.append(dict(batches.flips))
        batches.on_epoch_end()
    assert not np.array_equal(per_epoch[0]["reflect_eta"], per_epoch[1]["reflect_eta"])
    first, second = (
        ConsistentBatches(student, Teacher(teacher, view), augment, 32, seed=5) for _ in range(2)
    )
    np.testing.assert_array_equal(first[1][0], second[1][0])  # the draws follow the seed


def test_teacher_over_other_jets_is_refused() -> None:
    student, teacher_view = _views(40, 4, 8)
    other = dataclasses.replace(teacher_view.train, y=teacher_view.train.y[::-1])
    moved = Dataset(other, other, other, teacher_view.input_stage)
    with pytest.raises(TriggerError, match="teacher and student training jets differ"):
        ConsistentBatches(student, Teacher(FingerprintTeacher(8), moved), ("reflect_eta",), 8, 0)


@pytest.mark.parametrize(
    ("distillation", "expected"),
    [
        ({"augment": ["reflect_eta", "reflect_eta"]}, "names a symmetry twice"),
        ({"augment": ["rotate"]}, "distillation.augment"),
        ({"epochs": 0}, "distillation.epochs"),
        ({"patience": 0}, "distillation.patience"),
    ],
)
def test_bad_distillation_options_are_one_line(distillation: dict, expected: str) -> None:
    with pytest.raises(TriggerError, match=expected) as error:
        recipe_from_dict({"distillation": distillation})
    assert "\n" not in str(error.value)


def test_distilled_student_takes_the_distillation_epochs_and_patience() -> None:
    from trigger.training.fit import training_settings

    recipe = recipe_from_dict({"training": {"epochs": 5, "patience": 2},
                               "distillation": {"epochs": 40, "patience": 12}})  # fmt: skip
    distilled = training_settings(recipe, 0, distilled=True)
    label_only = training_settings(recipe, 0)
    assert (distilled.epochs, distilled.patience) == (40, 12)
    assert (label_only.epochs, label_only.patience) == (5, 2)
    unset = recipe_from_dict({"training": {"epochs": 5, "patience": 2}})
    assert training_settings(unset, 0, distilled=True) == label_only


@pytest.mark.slow
def test_augmented_distillation_trains_reproducibly_for_its_own_epochs(
    synthetic_data, tmp_path
) -> None:
    """A student distilled on the fly (teacher over 32 candidates, student over 16, extra jets
    labelled by the teacher alone) for `distillation.epochs`, twice with the same seed: the
    same weights. Without augmentation the extra jets train as well."""
    pytest.importorskip("qkeras")
    from tests.conftest import write_synthetic_file
    from tests.test_compress import _fast_recipe
    from trigger import taggers
    from trigger.data.loader import load_dataset
    from trigger.training.stage import distilling_teacher
    from trigger.training.student import train_student
    from trigger.training.teacher import teacher_data

    extra = write_synthetic_file(tmp_path / "extra.h5", 40, seed=3)
    recipe = _fast_recipe(
        pruning={"enabled": False},
        distillation={"augment": ["reflect_eta", "reflect_phi"], "epochs": 2, "patience": 5,
                      "extra_data": str(extra)},
    )  # fmt: skip
    data = load_dataset(recipe.data, recipe.quantization.input, synthetic_data)
    view = teacher_data(recipe, synthetic_data)
    assert view.train.x.shape[1] == 32 and data.train.x.shape[1] == 16
    model = taggers.build_teacher(recipe, view.train.x.shape[-1])
    teacher = distilling_teacher(recipe, synthetic_data, model, view)
    assert len(teacher.extra[0]) == 200
    first, second = (train_student(recipe, data, teacher, verbose=0) for _ in range(2))
    assert len(first.history["loss"]) == 2  # distillation.epochs, not training.epochs (8)
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    fixed = recipe.model_copy(
        update={"distillation": recipe.distillation.model_copy(update={"augment": ()})}
    )
    history = train_student(fixed, data, teacher, verbose=0).history
    assert np.isfinite(history["loss"]).all() and 0 < history["accuracy"][-1] <= 1


def _bench_distill():
    spec = importlib.util.spec_from_file_location("bench_distill", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_table_gives_paired_gains_with_their_standard_errors() -> None:
    bench = _bench_distill()
    table = bench.markdown(
        {"label-only": [0.60, 0.62, 0.64], "distilled": [0.61, 0.64, 0.64]}, "title"
    )
    cells = [line.strip("| ").split(" | ") for line in table.splitlines()[4:]]
    rows = {row[0]: row[1:] for row in cells}
    assert list(rows) == ["label-only", "distilled"]
    assert rows["label-only"][:2] == ["0.6200", "0.0115"]
    # Gains 1, 2, 0 points: mean 1, standard error 1 / sqrt(3); not the unpaired error.
    assert rows["distilled"][2:] == ["+1.00", "0.58"]


@pytest.mark.slow
def test_bench_distill_smoke(synthetic_data, tmp_path) -> None:
    out = tmp_path / "table.md"
    tiny = ("embed=16", "blocks=1", "rho=[16]", "heads=1")
    sets = [a for t in tiny for a in ("--set", f"distillation.teacher.architecture.{t}")]
    args = [sys.executable, str(BENCH), "--data", str(synthetic_data), "--jets", "600",
            "--epochs", "1", "--teacher-epochs", "1", "--seeds", "2", "--work", str(tmp_path),
            "--out", str(out), "--set", "training.batch_size=128", *sets]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    table = out.read_text()
    assert "360 training and 120 test jets, 1 epochs, seeds 1-2" in table
    names = [line.strip("| ").split(" | ")[0] for line in table.splitlines()[4:]]
    assert names == ["label-only", "distilled", "distilled, reflect_eta + reflect_phi"]
    assert table in result.stdout


def test_extra_jets_join_both_training_splits_unlabelled() -> None:
    student, view = _views(30, 4, 8)
    rng = np.random.default_rng(6)
    words, jet = split_words(random_words(12, 8, rng), 8)
    teacher = Teacher(FingerprintTeacher(8), view, (words, jet))
    with_extra, view_extra = teacher.training_jets(student)
    for data, original, n in ((with_extra, student, 4), (view_extra, view, 8)):
        assert len(data.train) == 42 and data.validation is original.validation
        np.testing.assert_array_equal(data.train.x[:30], original.train.x)
        np.testing.assert_array_equal(data.train.x[30:], data.input_stage.apply(words[:, :n], jet))
        assert not data.train.y[30:].any() and (data.train.weight[30:] == 1).all()
    np.testing.assert_array_equal(with_extra.train.y, view_extra.train.y)


def test_accuracy_counts_only_labelled_rows() -> None:
    pytest.importorskip("tensorflow")
    from trigger.training.fit import labelled_accuracy

    labels = np.zeros((4, 10), np.float32)
    labels[0, 0] = labels[1, 1] = labels[2, 2] = 1  # row 3: a teacher-only jet
    logits = np.eye(5, dtype=np.float32)[[0, 1, 3, 4]]
    metric = labelled_accuracy()
    metric.update_state(labels, logits, sample_weight=np.array([1, 1, 2, 5], np.float32))
    assert metric.result().numpy() == pytest.approx(2 / 4)  # weights 1 + 1 hit, 2 missed


def test_extra_data_is_never_the_training_file(synthetic_data, tmp_path) -> None:
    from trigger.training.stage import train_and_compress

    copy = tmp_path / "copy.h5"
    copy.write_bytes(synthetic_data.read_bytes())
    for extra in (synthetic_data, copy):
        recipe = recipe_from_dict({"distillation": {"extra_data": str(extra)}})
        with pytest.raises(TriggerError, match="is the training data file") as error:
            train_and_compress(recipe, synthetic_data, tmp_path / "run", verbose=0)
        assert "\n" not in str(error.value)
    recipe = recipe_from_dict({"distillation": {"extra_data": str(tmp_path / "none.h5")}})
    with pytest.raises(TriggerError, match=r"distillation\.extra_data not found: .*none\.h5"):
        train_and_compress(recipe, synthetic_data, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_extra_data_counts_in_the_run_sources_by_content(synthetic_data, tmp_path) -> None:
    from tests.conftest import write_synthetic_file
    from trigger.training.stage import train_sources

    extra = write_synthetic_file(tmp_path / "extra.h5", 20, seed=1)
    moved = tmp_path / "moved.h5"
    moved.write_bytes(extra.read_bytes())
    other = write_synthetic_file(tmp_path / "other.h5", 20, seed=2)

    def sources(path: Path, **distillation):
        section = {"extra_data": str(path), **distillation}
        return train_sources(recipe_from_dict({"distillation": section}), synthetic_data)

    assert sources(extra) == sources(moved)
    assert sources(extra)["extra_data"] != sources(other)["extra_data"]
    assert "extra_data" not in sources(extra, enabled=False)
    assert sources(extra)["recipe"] == sources(other)["recipe"]
