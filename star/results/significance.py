"""Paired comparisons of two strategies over seeds: is a difference more than seed noise?

Two strategies run on the same seed share the pool, the test set and the warm start, so their
AUCs are compared seed by seed: the mean of the per-seed differences, its 95 % t-interval and
the two-sided paired t-test's p-value. With the observed spread of the differences, a power
hint says how many seeds a paired t-test would need to detect the observed mean difference
at 80 % power (α = 0.05); one seed supports no interval, test or hint at all.

The probes compare what is not paired by seed: a correlation between two uncertainty columns
(Fisher's z interval) and the mean confidence of two models' wrong answers, which are
different examples (Welch's interval and test).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 1000
"""The power hint gives up beyond this many seeds (a difference that small is no finding)."""


@dataclass(frozen=True)
class Paired:
    """`first` − `second` over the seeds both have."""

    seeds: list[int]
    differences: list[float]
    mean: float
    low: float | None
    """95 % t-interval of the mean difference; None with fewer than two seeds."""
    high: float | None
    p_value: float | None
    seeds_for_power: int | None
    """Seeds a paired t-test needs to detect `mean` at 80 % power given the observed spread;
    None with fewer than two seeds, a zero difference, or more than `MAX_SEEDS`."""

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


@dataclass(frozen=True)
class Estimate:
    """A statistic with its 95 % interval and the two-sided p-value of "it is 0"."""

    value: float
    low: float
    high: float
    p_value: float
    count: int
    """How many values (pairs, for a correlation) it rests on."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def correlation(first: list[float], second: list[float]) -> Estimate:
    """Pearson's r of two equally long columns; interval by Fisher's z (n ≥ 4), p by the t-test
    of r = 0 with n − 2 degrees of freedom."""
    from scipy import stats

    n = len(first)
    if n != len(second) or n < 4:
        raise ValueError(f"a correlation interval needs two columns of at least 4 equal-length "
                         f"values, got {n} and {len(second)}")
    r = float(np.corrcoef(first, second)[0, 1])
    if abs(r) >= 1 - 1e-12:  # a perfect line: nothing to be unsure about
        return Estimate(r, r, r, 0.0, n)
    half = float(stats.norm.ppf(1 - ALPHA / 2)) / math.sqrt(n - 3)
    z = math.atanh(r)
    t = r * math.sqrt((n - 2) / (1 - r * r))
    return Estimate(r, math.tanh(z - half), math.tanh(z + half),
                    float(2 * stats.t.sf(abs(t), n - 2)), n)


def unpaired(first: list[float], second: list[float]) -> Estimate:
    """mean(`first`) − mean(`second`) of two independent samples: Welch's t-interval and test,
    which do not assume equal spreads."""
    from scipy import stats

    if min(len(first), len(second)) < 2:
        raise ValueError(f"Welch's test needs at least 2 values a side, got {len(first)} and "
                         f"{len(second)}")
    test = stats.ttest_ind(first, second, equal_var=False)
    interval = test.confidence_interval(1 - ALPHA)
    return Estimate(float(np.mean(first) - np.mean(second)), float(interval.low),
                    float(interval.high), float(test.pvalue), len(first) + len(second))


def seeds_for_power(mean: float, std: float) -> int | None:
    """The smallest n whose two-sided paired t-test at α detects a true mean difference `mean`
    with per-seed spread `std` with probability ≥ `POWER` (non-central t)."""

    if mean == 0 or not math.isfinite(mean):
        return None
    if std == 0:
        return 2  # no spread: any two seeds show the difference
    for n in range(2, MAX_SEEDS + 1):
        if paired_power(mean, std, n) >= POWER:
            return n
    return None


def paired_power(mean: float, std: float, n: int) -> float:
    """The probability that a two-sided paired t-test at α over n ≥ 2 seeds rejects "no
    difference" when the true mean difference is `mean` and its per-seed spread `std` > 0."""
    from scipy import stats

    df = n - 1
    critical = stats.t.ppf(1 - ALPHA / 2, df)
    shift = abs(mean) / (std / math.sqrt(n))
    # The wrong-sign tail: scipy's non-central t returns NaN far out in it (a large shift,
    # where it is below 1e-15), and a NaN power would pass over every n.
    wrong_sign = stats.nct.cdf(-critical, df, shift)
    return float(stats.nct.sf(critical, df, shift)
                 + (wrong_sign if math.isfinite(wrong_sign) else 0.0))


def detectable_difference(std: float, n: int) -> float | None:
    """The smallest true mean difference a paired t-test over n seeds detects at 80 % power
    (α = 0.05) given the per-seed spread `std`: `seeds_for_power` read the other way, what a
    seed count can see before the seeds are spent. None with fewer than two seeds."""
    from scipy.optimize import brentq

    if n < 2:
        return None
    if std == 0:
        return 0.0
    high = std
    while paired_power(high, std, n) < POWER:  # power rises with the difference
        high *= 2
    return float(brentq(lambda d: paired_power(d, std, n) - POWER, 0.0, high, xtol=1e-9 * std))


def paired(first: dict[int, float], second: dict[int, float]) -> Paired | None:
    """The comparison over the seeds both have (seed -> value); None when they share none."""
    from scipy import stats

    seeds = sorted(first.keys() & second.keys())
    if not seeds:
        return None
    differences = np.array([first[s] - second[s] for s in seeds], dtype=float)
    mean = float(differences.mean())
    if len(seeds) < 2:
        return Paired(seeds, differences.tolist(), mean, low=None, high=None, p_value=None,
                      seeds_for_power=None)
    std = float(differences.std(ddof=1))
    if std < 1e-12:  # equal differences but for float rounding: no spread
        std = 0.0
    n = len(seeds)
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * std / math.sqrt(n)
    statistic = math.inf if std == 0 else abs(mean) / (std / math.sqrt(n))
    p_value = 1.0 if mean == 0 else float(2 * stats.t.sf(statistic, n - 1))  # two-sided
    return Paired(seeds, differences.tolist(), mean, low=mean - half, high=mean + half,
                  p_value=p_value, seeds_for_power=seeds_for_power(mean, std))
