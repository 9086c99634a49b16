"""Strategies as switches looked up in one table, and the selection they share.

A strategy is a measure (ME, PE, or none for random) plus three switches of the paper:
dynamic mixing with the base model (Sec. 5.2), MC dropout (Eq. 7) and L2 decay on B
(Sec. 5.3). `me-star` is ME with all three; the Table 2 ablations turn them on one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from star.config import UncertaintyConfig
from star.errors import ConfigError
from star.uncertainty import dynamic_score, schedule_weight


@dataclass(frozen=True)
class Strategy:
    name: str
    measure: str | None
    """`me`, `pe`, or None for random selection."""
    dynamic: bool = False
    mc_dropout: bool = False
    l2_on_b: bool = False


def _table() -> dict[str, Strategy]:
    table = {"random": Strategy("random", None)}
    for measure in ("me", "pe"):
        variants = {
            measure: {},
            f"{measure}+dynamic": {"dynamic": True},
            f"{measure}+dynamic+mc": {"dynamic": True, "mc_dropout": True},
            f"{measure}+dynamic+l2": {"dynamic": True, "l2_on_b": True},
            f"{measure}-star": {"dynamic": True, "mc_dropout": True, "l2_on_b": True},
        }
        for name, switches in variants.items():
            table[name] = Strategy(name, measure, **switches)
    return table


STRATEGIES: dict[str, Strategy] = _table()


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{name}'; known strategies: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


@dataclass
class Scores:
    """One round's acquisition scores over the unlabeled pool (arrays of pool length)."""

    score: np.ndarray
    passes: np.ndarray | None = None
    """[passes, pool]: μ_f of each forward pass."""
    full: np.ndarray | None = None
    base: np.ndarray | None = None
    weight: float | None = None
    """λ(t) of the dynamic mix."""


def acquisition_scores(strategy: Strategy, passes: np.ndarray, base: np.ndarray | None,
                       t: int, total_rounds: int, config: UncertaintyConfig) -> Scores:
    """μ_f is the mean over passes; dynamic strategies mix it with μ_b by λ(t)."""
    full = passes.mean(axis=0)
    if not strategy.dynamic:
        return Scores(full, passes, full)
    if base is None:
        raise ValueError("a dynamic strategy needs the base model's scores")
    weight = schedule_weight(t, config.schedule, config.rate, total_rounds, config.constant)
    return Scores(dynamic_score(base, full, weight, config.mix), passes, full, base, weight)


def select_top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores; ties go to the earlier index."""
    return np.argsort(-np.asarray(scores), kind="stable")[:k]
