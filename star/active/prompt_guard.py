"""The prompt guard: a round hands out its tuned adapter only where the labels say it beats the
untrained prompt.

With a handful of labels LoRA can end below the base model it started from (SST-2 at 16
labels: 3 to 9 points below zero-shot in the earlier studies), and a team that labels 16 to 30
examples would then get a worse model than not training at all. Before a round's model is
evaluated, exported or used for the next selection, the guard weighs the two on evidence the
labels already give, without touching the test set:

- the tuned recipe's k-fold cross-validated accuracy on the labels so far: each fold is
  predicted by an adapter trained, as the round trains, on the other folds;
- the base model's accuracy on the same labels: it never trained on them, so that is held out
  too, and the two are paired example by example.

The tuned adapter is kept when its cross-validated accuracy is at least the base model's; else
the round hands out the base model (its initial adapter, whose B = 0 adds nothing). Each fold
trains on (k−1)/k of the labels, so cross-validation underrates the adapter trained on all of
them: the guard leans to the base model, the safe side at small budgets. The check costs k
trainings on (k−1)/k of the labels, so it runs only up to `guard.max_labels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

TUNED, BASE = "tuned", "base"


def fold_indices(count: int, folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`folds` disjoint, sorted index sets covering range(count), sizes differing by one at
    most, drawn by `rng`."""
    if not 2 <= folds <= count:
        raise ValueError(f"cannot split {count} labels into {folds} folds")
    return [np.sort(part) for part in np.array_split(rng.permutation(count), folds)]


def choose(tuned_correct: Sequence[bool], base_correct: Sequence[bool]) -> str:
    """TUNED when the tuned recipe's held-out accuracy is at least the base model's on the same
    examples (a tie keeps the adapter, which has trained on more labels than any fold), else
    BASE."""
    if len(tuned_correct) != len(base_correct) or not len(tuned_correct):
        raise ValueError("the guard compares both models on the same, non-empty examples")
    return TUNED if sum(tuned_correct) >= sum(base_correct) else BASE


@dataclass(frozen=True)
class GuardCheck:
    """One round's check, as results.json keeps it."""

    folds: int
    labels: int
    tuned_cv_accuracy: float
    base_accuracy: float
    chosen: str
    seconds: float

    @classmethod
    def of(cls, tuned_correct: Sequence[bool], base_correct: Sequence[bool], *, folds: int,
           seconds: float) -> GuardCheck:
        return cls(folds, len(base_correct), float(np.mean(tuned_correct)),
                   float(np.mean(base_correct)), choose(tuned_correct, base_correct),
                   round(seconds, 3))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
