"""The prompt guard: a round hands out its tuned adapter only where the labels say it beats the
untrained prompt.

With a handful of labels LoRA can end below the base model it started from (SST-2 at 16
labels: 3 to 9 points below zero-shot in the earlier studies), and a team that labels 16 to 30
examples would then get a worse model than not training at all. Before a round's model is
evaluated, exported or suggests answers, the guard weighs the two on evidence the labels
already give, without touching the test set (the next batch is picked with the adapter the
round trained, unless `guard.select_with: handed`):

- the tuned recipe's k-fold cross-validated balanced accuracy on the labels so far (plain
  accuracy for generative tasks): each fold is predicted by an adapter trained, as the round
  trains, on the other folds;
- the base model's on the same labels: it never trained on them, so that is held out too, and
  the two are paired example by example.

The tuned adapter is kept when its cross-validated score is at least the base model's; else
the round hands out the base model (its initial adapter, whose B = 0 adds nothing). A choice
task's class with fewer than `guard.min_per_class` labels leaves no evidence about it: its
recall over one held-out label is 0 or 1, a coin flip, while the adapter that saw one example
of it tends to answer the majority (the skewed SST-2 study: one negative in 16 labels, an
adapter 9 points under the prompt, kept on that coin). Until every class has that many, the
round hands out the base model without training the folds, unless (`guard.short_class:
score_the_rest`) two or more classes have that many: then both models are scored on those
classes alone, so that a prompt at chance (TREC-6's) is not handed out for want of one rare
class's labels. Each fold trains on (k−1)/k of the labels, so cross-validation
underrates the adapter trained on all of them: the guard leans to the base model, the safe
side at small budgets. The check costs k trainings on (k−1)/k of the labels, so it runs only
up to `guard.max_labels`, counted (`guard.reach: rarest_class`) as the rarest class has its
labels: the check goes on while a class stays rare, where adapters fall below the prompt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

TUNED, BASE = "tuned", "base"


def fold_indices(count: int, folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`folds` disjoint, sorted index sets covering range(count), sizes differing by one at
    most, drawn by `rng`."""
    if not 2 <= folds <= count:
        raise ValueError(f"cannot split {count} labels into {folds} folds")
    return [np.sort(part) for part in np.array_split(rng.permutation(count), folds)]


def held_out_score(correct: Sequence[bool], classes: Sequence[str] | None) -> float:
    """Accuracy, or with `classes` (each example's gold label) balanced accuracy: the mean over
    the classes present of the share of their examples answered right.

    A handful of labels is often lopsided (13 of 16 one way in the SST-2 study), and there an
    adapter that learned to answer the majority label holds out as well as the prompt on
    plain accuracy while it falls to chance on a balanced test set; weighing the classes
    alike judges what the labels say about each class, not their sample's proportions.

    Computed as a fraction and rounded once, so that equal scores are equal floats: the two
    scores are compared, and a tie decides (2/4 and 10/12 right averaged in floats gives
    0.6666666666666667, 4/4 and 4/12 gives 0.6666666666666666)."""
    if classes is None:
        return float(Fraction(sum(map(bool, correct)), len(correct)))
    by_class: dict[str, list[bool]] = {}
    for right, label in zip(correct, classes, strict=True):
        by_class.setdefault(label, []).append(bool(right))
    recalls = [Fraction(sum(rights), len(rights)) for rights in by_class.values()]
    return float(sum(recalls) / len(recalls))


def class_counts(golds: Sequence[str], labels: Sequence[str]) -> dict[str, int]:
    """How many of `golds` each of the task's classes (`labels`, in their order) has, 0 where
    it has none: the rarest is the smallest value."""
    counts = Counter(golds)
    return {label: counts[label] for label in labels}


def reach_count(counts: Mapping[str, int] | None, total: int, reach: str) -> int:
    """A round's labels as `guard.max_labels` counts them: all `total` of them (`reach:
    labels`, or a generative task: `counts` None), or under `rarest_class` the rarest class's
    count times the number of classes (`counts`: `class_counts`). That is `total` where the
    classes are balanced and less where one is rare: SST-2 with 3 negatives in 128 labels
    counts 6, so the check goes on while a class stays rare."""
    if reach == "labels" or counts is None:
        return total
    return len(counts) * min(counts.values())


def within_reach(counts: Mapping[str, int] | None, total: int, max_labels: int | None,
                 reach: str) -> bool:
    """Whether the guard checks a round of `total` labels (`counts`: `class_counts`, None for a
    generative task): `max_labels` None checks every round, else the round as `reach_count`
    counts it must be at most `max_labels`."""
    return max_labels is None or reach_count(counts, total, reach) <= max_labels


def scored_classes(counts: Mapping[str, int], minimum: int, short_class: str) -> list[str] | None:
    """The classes the check scores both models on: all of them where each has `minimum`
    labels (`counts`: `class_counts`); where one has fewer, under `short_class:
    score_the_rest` those that have `minimum`, if two or more do. None where no check is
    possible: the base model is handed out unchecked (`short_class: base`, or fewer than two
    classes have enough labels to compare the models on)."""
    enough = [label for label, count in counts.items() if count >= minimum]
    if len(enough) == len(counts):
        return enough
    return enough if short_class == "score_the_rest" and len(enough) >= 2 else None


def evidence(check: Mapping[str, Any]) -> str:
    """What a check (`GuardCheck.to_dict`, as results.json keeps it) weighed, in words, for the
    loop's log and `star status`."""
    if check["tuned_cv"] is None:
        return (f"the rarest class has {check['fewest']} of the labels, too few to check the "
                "tuned recipe")
    left_out = check.get("left_out")  # absent from a record before `guard.short_class`
    return (f"tuned recipe {100 * check['tuned_cv']:.1f} % held out in {check['folds']} folds"
            + (f", without {', '.join(left_out)} (too few labels)" if left_out else ""))


def choose(tuned: float | None, base: float) -> str:
    """TUNED when the tuned recipe's held-out score is at least the base model's on the same
    examples (a tie keeps the adapter, which trained on more labels than any fold), else BASE;
    BASE where the recipe was not checked (None: a class had too few labels)."""
    return TUNED if tuned is not None and tuned >= base else BASE


@dataclass(frozen=True)
class GuardCheck:
    """One round's check, as results.json keeps it."""

    folds: int
    labels: int
    """All the round's labels, those of the classes `left_out` too."""
    metric: str
    """`balanced_accuracy` (choice tasks) or `accuracy` (generative ones, whose answers have no
    classes)."""
    fewest: int | None
    """Labels of the task's rarest class (None for generative tasks)."""
    tuned_cv: float | None
    """None where `fewest` was under `guard.min_per_class` and no check was possible
    (`scored_classes`): no fold trained, folds is 0."""
    base: float
    chosen: str
    seconds: float
    left_out: list[str] = field(default_factory=list)
    """Classes with under `guard.min_per_class` labels, whose examples neither score counts
    (`guard.short_class: score_the_rest`); empty where every class is scored, or none was
    checked, and in a record from before the key."""

    @classmethod
    def of(cls, tuned_correct: Sequence[bool] | None, base_correct: Sequence[bool],
           classes: Sequence[str] | None, *, folds: int, fewest: int | None,
           seconds: float, left_out: Sequence[str] = ()) -> GuardCheck:
        """`tuned_correct` None: the recipe was not checked (folds 0), the base model is chosen.
        Both scores leave out the examples of the classes in `left_out`."""
        if not len(base_correct) or (tuned_correct is not None
                                     and len(tuned_correct) != len(base_correct)):
            raise ValueError("the guard compares both models on the same, non-empty examples")
        kept = [i for i in range(len(base_correct))
                if classes is None or classes[i] not in left_out]
        if not kept:
            raise ValueError("the guard leaves out every class of the labels")
        scored = None if classes is None else [classes[i] for i in kept]
        tuned = None if tuned_correct is None else \
            held_out_score([tuned_correct[i] for i in kept], scored)
        base = held_out_score([base_correct[i] for i in kept], scored)
        return cls(folds if tuned_correct is not None else 0, len(base_correct),
                   "accuracy" if classes is None else "balanced_accuracy", fewest, tuned, base,
                   choose(tuned, base), round(seconds, 3), list(left_out))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
