"""What a protocol can see: labels saved against random, the deficiency score, and the noise
in one round's accuracy.

Labels saved answers the question a team asks of a strategy: how many labels does it spare? It
is counted on one metric's curves (accuracy, or macro-F1 where a rare class matters), here
called accuracy. On each seed, random's final accuracy is the target; the strategy's curve
(accuracy against labels, linear between its rounds) reaches it first at some label count, and
the saving is 1 − that count / random's budget (random's last label count). A strategy that
never reaches the target within its rounds is "not reached": it would need more than its own
budget, so its saving is below 1 − budget / random's budget (0 when the budgets are equal). It
is counted at that bound, which overstates it, and the count of such seeds is shown beside the
mean, which is then an upper bound. The first crossing credits a bumpy curve by chance:
random's own curve often touches its final accuracy before its last round, so random's row is
the floor to read the others against, and the report subtracts it seed by seed. Where random
ends at or below where it started (labels that make the model worse, as on a skewed pool where
random's adapters forget the rare class), its final accuracy is met at its first round, and a
saving says only that the strategy fell less far: the paired final accuracy and AUC say more
there.

The deficiency score (Zhang & Plank 2021) looks at the whole curve instead of one target: the
area between a reference accuracy (the best of any run of the setup and seed, or a full-data
accuracy) and the strategy's curve, divided by the same area for random. Below 1 the strategy
stays closer to the reference than random does.

The noise budget splits a round's accuracy spread: the test set's own binomial error at that
accuracy, and the spread between seeds (and, from `star noise`, between training seeds on the
same labels), pooled over the groups that share a round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
"""The two-sided 95 % quantile of the normal distribution."""
RESAMPLES = 10_000
"""Bootstrap resamples of the seeds: the interval's ends move by well under 0.1 point."""


def labels_needed(n_labeled: Sequence[float], accuracy: Sequence[float],
                  target: float) -> float | None:
    """The label count at which the curve first reaches `target`, linear between its points;
    its first label count when it starts there; None when it never does."""
    for i, (n, a) in enumerate(zip(n_labeled, accuracy, strict=True)):
        if a >= target:
            if i == 0:
                return float(n)
            n0, a0 = n_labeled[i - 1], accuracy[i - 1]
            return float(n0 + (target - a0) / (a - a0) * (n - n0))
    return None


@dataclass(frozen=True)
class Saving:
    """One seed's labels saved against random."""

    needed: float | None
    """Labels the curve needs to reach random's final accuracy; None: not reached."""
    saved: float
    """1 − needed / random's budget; when not reached, its upper bound (needed at the
    strategy's own budget)."""

    @property
    def reached(self) -> bool:
        return self.needed is not None


def labels_saved(n_labeled: Sequence[float], accuracy: Sequence[float],
                 random_n: Sequence[float], random_accuracy: Sequence[float]) -> Saving:
    """The strategy's curve against random's curve of the same seed and setup."""
    needed = labels_needed(n_labeled, accuracy, random_accuracy[-1])
    counted = needed if needed is not None else n_labeled[-1]
    return Saving(needed, 1.0 - counted / random_n[-1])


def _gap_area(n_labeled: Sequence[float], accuracy: Sequence[float], reference: float) -> float:
    """Trapezoid area between the level `reference` and the curve."""
    x = np.asarray(n_labeled, dtype=float)
    gap = reference - np.asarray(accuracy, dtype=float)
    return float(np.sum((x[1:] - x[:-1]) * (gap[1:] + gap[:-1]) / 2.0))


def deficiency(n_labeled: Sequence[float], accuracy: Sequence[float], random_n: Sequence[float],
               random_accuracy: Sequence[float], reference: float) -> float | None:
    """Area between `reference` and the curve over the same area for random; None when random's
    area is not positive (random at the reference all along: nothing to fall short of)."""
    random_area = _gap_area(random_n, random_accuracy, reference)
    if random_area <= 0:
        return None
    return _gap_area(n_labeled, accuracy, reference) / random_area


def bootstrap_interval(values: Sequence[float],
                       rng: np.random.Generator) -> tuple[float, float] | None:
    """95 % percentile interval of the mean, resampling the values (one per seed) with
    replacement; None for fewer than two values, whose resamples would all be one value."""
    array = np.asarray(values, dtype=float)
    if len(array) < 2:
        return None
    means = array[rng.integers(0, len(array), size=(RESAMPLES, len(array)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def binomial_se(accuracy: float, test_size: int) -> float:
    """Standard error of an accuracy measured on `test_size` independent test examples: the
    spread a different test set of that size alone would give."""
    return math.sqrt(accuracy * (1.0 - accuracy) / test_size)


def pooled_sd(groups: Sequence[Sequence[float]]) -> float | None:
    """Sample standard deviation pooled over groups, each about its own mean:
    sqrt(Σ (n_g − 1) s_g² / Σ (n_g − 1)). None when no group has two values."""
    squares = sum(float(np.sum((np.asarray(g) - np.mean(g)) ** 2)) for g in groups if len(g) > 1)
    freedom = sum(len(g) - 1 for g in groups if len(g) > 1)
    return math.sqrt(squares / freedom) if freedom else None
