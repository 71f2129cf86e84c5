"""Knowledge distillation: the loss, the teacher's view, and consistent augmentation.

Without `distillation.augment` the teacher's logits on the fixed training jets are computed
once. With it, every step mirrors its jets on the L1 words and feeds the same mirrored jets
to the teacher and to the student (`ConsistentBatches`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trigger import taggers
from trigger.data.loader import Dataset, JetSample, word_chunks
from trigger.errors import TriggerError
from trigger.inputs import CANDIDATE_WORDS, split_words
from trigger.training.fit import N_CLASSES


def distillation_loss(temperature: float, alpha: float, distill: bool):
    """Hard-label cross-entropy, mixed with the KL divergence to the teacher's softened logits.

    `y_true` is the one-hot label, followed by the teacher's logits when distilling:
    loss = (1 - alpha) * CE(y, s) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)).
    The T^2 keeps the soft-gradient scale independent of T (Hinton et al. 2015).
    """
    import tensorflow as tf

    def loss(y_true, logits):
        labels = y_true[:, :N_CLASSES]
        hard = tf.keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
        if not distill:
            return hard
        log_t = tf.nn.log_softmax(y_true[:, N_CLASSES:] / temperature)
        log_s = tf.nn.log_softmax(logits / temperature)
        kl = tf.reduce_sum(tf.exp(log_t) * (log_t - log_s), axis=-1)
        return (1.0 - alpha) * hard + alpha * temperature**2 * kl

    loss.__name__ = "distillation_loss" if distill else "crossentropy"
    return loss


# Word column negated by each symmetry, in both the candidate words (pT, eta, phi) and the
# jet's (pT, eta, phi, count).
REFLECTED_WORD = {"reflect_eta": 1, "reflect_phi": 2}


@dataclass(frozen=True)
class Teacher:
    """What distilling needs: the teacher, its view (its own N) of the student's jets, and
    the words of any extra jets it alone labels (`distillation.extra_data`)."""

    model: Any
    data: Dataset
    extra: tuple[np.ndarray, np.ndarray] | None = None  # (jets, N, 3) and (jets, 4) words

    def logits(self, sample: JetSample) -> np.ndarray:
        return taggers.predict(self.model, sample.x)

    def training_jets(self, student: Dataset) -> tuple[Dataset, Dataset]:
        """The student's and the teacher's datasets with the extra jets appended to both
        training splits, in the same order, unlabelled (all-zero label rows, weight 1)."""
        if self.extra is None:
            return student, self.data
        return _with_extra(student, *self.extra), _with_extra(self.data, *self.extra)


def extra_jets(path: str | Path, n_constituents: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate and jet words of every jet of `path`, the leading `n_constituents`."""
    who = "distillation.extra_data"
    chunks = list(word_chunks(path, n_constituents, 20_000, who))
    if not chunks:
        msg = f"{path}: {who} holds no jets"
        raise TriggerError(msg)
    return split_words(np.concatenate(chunks), n_constituents)


def _with_extra(data: Dataset, words: np.ndarray, jet: np.ndarray) -> Dataset:
    n = data.input_stage.n_constituents
    candidates = words[:, :n]
    train = data.train
    unlabelled = np.zeros((len(jet), N_CLASSES), np.float32)
    both = JetSample(
        np.concatenate([train.candidates, candidates]),
        np.concatenate([train.jet, jet]),
        np.concatenate([train.y, unlabelled]),
        np.concatenate([train.weight, np.ones(len(jet), np.float32)]),
        {},
        np.concatenate([train.x, data.input_stage.apply(candidates, jet)]),
    )
    return dataclasses.replace(data, train=both)


def reflect(
    candidates: np.ndarray, jet: np.ndarray, symmetry: str, which: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The words of the jets `which` (bool, per jet) mirrored by `symmetry`; the others as given.

    Negating the eta (or phi) word of every candidate and of the jet mirrors the jet about its
    own axis: deta -> -deta, dphi -> -dphi (phi's +-pi, word -+720, being one angle). `to_words`
    rounds half to even, which is odd, so these are the words of the mirrored physical jet; the
    one exception is a word at the bottom of its range (eta -2048, phi -1024), which saturates
    to the top (2047, 1023): no real candidate sits there (|eta| = 8.9, |phi| = 1.42 pi).
    """
    column = REFLECTED_WORD[symmetry]
    candidates, jet = candidates.copy(), jet.copy()
    word = CANDIDATE_WORDS[column]
    candidates[which, :, column] = np.minimum(-candidates[which, :, column], word.high)
    jet[which, column] = np.minimum(-jet[which, column], word.high)
    return candidates, jet


def augmented(
    candidates: np.ndarray, jet: np.ndarray, flips: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """The words with each symmetry applied to the jets its mask selects."""
    for symmetry, which in flips.items():
        candidates, jet = reflect(candidates, jet, symmetry, which)
    return candidates, jet


class ConsistentBatches:
    """Training batches for distillation with augmentation (`fit` runs them as a Keras
    Sequence).

    Each epoch shuffles the training jets and draws, per jet and symmetry, whether to apply
    it. Student and teacher see the same mirrored jet of the same step (Beyer et al.,
    arXiv:2106.05237): the student's features are its input stage on the batch's mirrored
    words, and the teacher's logits are its function on the same mirrored words through its
    own input stage (its own N). The mirrorings form a group of at most 4 elements and the
    teacher is fixed, so its logits on every training jet under every element are computed
    once (`orbit`) and looked up per batch: the same numbers as calling the teacher in each
    step, for 4 teacher passes instead of one per step. The draws depend only on `seed` and
    the epoch.
    """

    def __init__(
        self,
        student: Dataset,
        teacher: Teacher,
        augment: tuple[str, ...],
        batch_size: int,
        seed: int,
    ) -> None:
        if not np.array_equal(student.train.y, teacher.data.train.y):
            msg = "teacher and student training jets differ"
            raise TriggerError(msg)
        self.student, self.augment = student, augment
        self.batch_size, self.seed = batch_size, seed
        self.orbit = self._orbit_logits(teacher)
        self.epoch = 0
        self._draw()

    def _element(self, flips: dict[str, np.ndarray]) -> np.ndarray:
        """Per jet, the group element its flips make: bit i set when symmetry i applies."""
        return sum(flips[s].astype(np.int64) << i for i, s in enumerate(self.augment))

    def _orbit_logits(self, teacher: Teacher) -> np.ndarray:
        """(elements, jets, 5): the teacher's logits on every training jet under each element."""
        sample, n = teacher.data.train, len(teacher.data.train)
        logits = []
        for element in range(2 ** len(self.augment)):
            flips = {s: np.full(n, bool(element >> i & 1)) for i, s in enumerate(self.augment)}
            words = augmented(sample.candidates, sample.jet, flips)
            logits.append(taggers.predict(teacher.model, teacher.data.input_stage.apply(*words)))
        return np.stack(logits).astype(np.float32)

    def _draw(self) -> None:
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.student.train)
        self.order = rng.permutation(n)
        self.flips = {s: rng.random(n) < 0.5 for s in self.augment}

    def __len__(self) -> int:
        return math.ceil(len(self.student.train) / self.batch_size)

    def jets(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Training-jet indices of batch `index` and, per symmetry, which of them it mirrors."""
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return rows, {s: which[rows] for s, which in self.flips.items()}

    def __getitem__(self, index: int):
        rows, flips = self.jets(index)
        sample = self.student.train
        x = self.student.input_stage.apply(
            *augmented(sample.candidates[rows], sample.jet[rows], flips)
        )
        y = np.concatenate([sample.y[rows], self.orbit[self._element(flips), rows]], axis=1)
        return x, y, sample.weight[rows]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._draw()
