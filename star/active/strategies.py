"""Strategies as switches in one table, and everything derived from it.

A strategy is a measure (ME, PE, or none for random) plus three switches of the paper:
dynamic mixing with the base model (Sec. 5.2), MC dropout (Eq. 7) and L2 decay on B
(Sec. 5.3). `me-star` is ME with all three; the Table 2 ablations turn them on one by one.
The table's order is the display order; Table 1/2 membership and each strategy's colour
are read off it, so a new strategy is one entry here and nothing anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from star.active.mixing import dynamic_score
from star.errors import ConfigError


@dataclass(frozen=True)
class Strategy:
    name: str
    measure: str | None
    """`me`, `pe`, or None for random selection."""
    dynamic: bool = False
    mc_dropout: bool = False
    l2_on_b: bool = False
    color: str = "black"
    """The strategy's colour in every figure, so a reader can follow it across them."""

    @property
    def in_table1(self) -> bool:
        """Table 1 (main results): random, each plain measure, and each measure with STAR."""
        switches = (self.dynamic, self.mc_dropout, self.l2_on_b)
        return self.measure is None or all(switches) or not any(switches)

    @property
    def in_table2(self) -> bool:
        """Table 2 (ablations): every strategy with a measure."""
        return self.measure is not None


_VARIANTS = (  # suffix, switches, colour per measure (pe, me)
    ("", {}, ("tab:orange", "tab:red")),
    ("+dynamic", {"dynamic": True}, ("gold", "tab:pink")),
    ("+dynamic+mc", {"dynamic": True, "mc_dropout": True}, ("tab:brown", "tab:cyan")),
    ("+dynamic+l2", {"dynamic": True, "l2_on_b": True}, ("tab:olive", "tab:blue")),
    ("-star", {"dynamic": True, "mc_dropout": True, "l2_on_b": True}, ("tab:green", "tab:purple")),
)


def _table() -> dict[str, Strategy]:
    table = {"random": Strategy("random", None, color="tab:gray")}
    for column, measure in enumerate(("pe", "me")):
        for suffix, switches, colors in _VARIANTS:
            name = measure + suffix
            table[name] = Strategy(name, measure, **switches, color=colors[column])
    return table


STRATEGIES: dict[str, Strategy] = _table()
TABLE1 = [name for name, s in STRATEGIES.items() if s.in_table1]
TABLE2 = [name for name, s in STRATEGIES.items() if s.in_table2]


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{name}'; known strategies: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def display_order(name: str) -> tuple[int, str]:
    """Sort key: the table's order, unknown names last."""
    names = list(STRATEGIES)
    return (names.index(name) if name in names else len(names), name)


def strategy_color(name: str) -> str | None:
    strategy = STRATEGIES.get(name)
    return strategy.color if strategy else None


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


def acquisition_scores(strategy: Strategy, passes: np.ndarray, base: np.ndarray | None, *,
                       weight: float, mix: str = "weighted", normalise: str = "pool") -> Scores:
    """μ_f is the mean over passes; dynamic strategies mix it with μ_b (from `normalise_base`)
    by the weight λ(t) (from `schedule_weight`)."""
    full = passes.mean(axis=0)
    if not strategy.dynamic:
        return Scores(full, passes, full)
    if base is None:
        raise ValueError("a dynamic strategy needs the base model's scores")
    mixed = dynamic_score(base, full, weight, mix, normalise=normalise)
    return Scores(mixed, passes, full, base, weight=weight)


def select_top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores; ties go to the earlier index."""
    return np.argsort(-np.asarray(scores), kind="stable")[:k]
