"""Strategies as a small algebra in one table, and everything derived from it.

A strategy is a measure (see `measures.MEASURES`; none for random) with three switches of
the paper: dynamic mixing with the base model (Sec. 5.2), MC dropout (Eq. 7) and L2 decay on
B (Sec. 5.3); then a batch rule (see `diversity.BATCH_RULES`): the paper's top-k, or a rule
that diversifies or samples. `me-star` is ME with all three switches and top-k; the Table 2
ablations turn them on one by one; `me+kcenter` is plain ME with k-center batches. `typiclust` is
label-free TypiClust (`typicality`), and the prefix `typiclust-` puts typicality in the base
model's slot of a dynamic strategy's mix (`typiclust-me-star`: typical first, uncertain later).
`auto` hedges: a bandit over other strategies draws each batch from their mixture (`bandit`).
The table's order is the display order; Table 1/2 membership and each strategy's colour are
read off it, so a new measure, switch or rule is one entry here and nothing anywhere else.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from star.active.diversity import (
    BATCH_RULES,
    badge,
    class_balanced,
    kcenter_greedy,
    stochastic_top_k,
)
from star.active.measures import MEASURES
from star.active.mixing import dynamic_score
from star.errors import ConfigError


@dataclass(frozen=True)
class Strategy:
    name: str
    measure: str | None
    """One of `measures.MEASURES`, or None for random selection (and for typiclust)."""
    dynamic: bool = False
    mc_dropout: bool = False
    l2_on_b: bool = False
    rule: str = "top"
    """How the batch is taken from the scores (`diversity.BATCH_RULES`)."""
    typical: bool = False
    """The base model speaks through the typicality of its hidden states (`typicality`), not
    its uncertainty: without a measure, TypiClust's picks are the batch (`typiclust`); with one,
    typicality takes μ_b's slot of the λ(t) mix (`typiclust-me-star`)."""
    bandit: bool = False
    """No measure of its own: the batch is drawn from the mixture of the strategies in
    `bandit.arms`, weighted by how well their picks trained the model (`bandit`, ALBL)."""
    color: str | None = None
    """A fixed colour (random and the paper's strategies, as in the earlier reports); the
    others are coloured per figure by `strategy_colors`, so a reader can follow a strategy
    across the figures of one report."""

    @property
    def reads_model(self) -> bool:
        """Whether its picks read the model's scores: a measure, or a bandit over arms that
        may (random and typiclust alone pick without the model being trained)."""
        return self.measure is not None or self.bandit

    @property
    def in_table1(self) -> bool:
        """Table 1 (main results): random, each plain measure, and each measure with STAR."""
        switches = (self.dynamic, self.mc_dropout, self.l2_on_b)
        if self.measure == "bald":  # BALD is MC dropout: its plain form has that switch on
            switches = (self.dynamic, self.l2_on_b)
        return self.measure is None or all(switches) or not any(switches)

    @property
    def in_table2(self) -> bool:
        """Table 2 (ablations): every strategy with a measure."""
        return self.measure is not None

    @property
    def features(self) -> bool:
        """Whether the batch rule reads the label distribution and hidden states."""
        return self.rule in ("kcenter", "badge")


VARIANTS = (  # suffix, switches
    ("", {}),
    ("+dynamic", {"dynamic": True}),
    ("+dynamic+mc", {"dynamic": True, "mc_dropout": True}),
    ("+dynamic+l2", {"dynamic": True, "l2_on_b": True}),
    ("-star", {"dynamic": True, "mc_dropout": True, "l2_on_b": True}),
)
_PAPER_COLORS = {  # the paper's measures keep the colours of the earlier reports
    "pe": ("tab:orange", "gold", "tab:brown", "tab:olive", "tab:green"),
    "me": ("tab:red", "tab:pink", "tab:cyan", "tab:blue", "tab:purple"),
}
_OTHER_COLORS = ("#393b79", "#5254a3", "#6b6ecf", "#9c9ede", "#637939", "#8ca252", "#b5cf6b",
                 "#cedb9c", "#8c6d31", "#bd9e39", "#e7ba52", "#e7cb94", "#843c39", "#ad494a",
                 "#d6616b", "#e7969c", "#7b4173", "#a55194", "#ce6dbd", "#de9ed6")
"""matplotlib's tab20b, handed out in turn to the strategies of one figure beyond the paper's
(no import of matplotlib here: the labeling commands load the strategy table and must start
fast)."""
TYPICAL_PREFIX = "typiclust-"
"""Before a dynamic strategy: its λ(t) mix weighs typicality (`typicality.typical_scores`)
instead of the base model's uncertainty. Not `>` (typical, then uncertain), which a shell
would read as a redirection."""
_BALD_VARIANTS = ("", "+dynamic", "-star")
"""BALD reads K MC passes, so its MC switch is always on: `bald+dynamic+mc` would be
`bald+dynamic`, and `bald+dynamic+l2` would be `bald-star`."""


def _table() -> dict[str, Strategy]:
    table = {"random": Strategy("random", None, color="tab:gray"),
             "typiclust": Strategy("typiclust", None, typical=True),
             "auto": Strategy("auto", None, bandit=True)}
    for rule in BATCH_RULES:
        for measure in MEASURES:
            for index, (suffix, switches) in enumerate(VARIANTS):
                if measure == "bald" and suffix not in _BALD_VARIANTS:
                    continue
                name = measure + suffix + ("" if rule == "top" else f"+{rule}")
                if measure == "bald":
                    switches = {**switches, "mc_dropout": True}
                paper = rule == "top" and measure in _PAPER_COLORS
                color = _PAPER_COLORS[measure][index] if paper else None
                table[name] = Strategy(name, measure, **switches, rule=rule, color=color)
    table.update({TYPICAL_PREFIX + name: replace(s, name=TYPICAL_PREFIX + name, typical=True,
                                                 color=None)
                  for name, s in table.items() if s.dynamic})
    return table


STRATEGIES: dict[str, Strategy] = _table()
TABLE1 = [name for name, s in STRATEGIES.items() if s.in_table1]
TABLE2 = [name for name, s in STRATEGIES.items() if s.in_table2]
GRAMMAR = ("random, or a measure (" + ", ".join(MEASURES) + ") with none or one of "
           + ", ".join(suffix for suffix, _ in VARIANTS[1:]) + ", then optionally one of "
           + ", ".join(f"+{rule}" for rule in BATCH_RULES[1:])
           + "; or typiclust (label-free); or auto (a bandit over bandit.arms); a dynamic one "
           + "may take the prefix " + TYPICAL_PREFIX
           + ", which mixes in typicality where μ_b was"
           + " (e.g. me-star, margin+dynamic, bald-star, me+kcenter, me-star+balanced)")


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{name}'; a strategy is {GRAMMAR}")
    return STRATEGIES[name]


def switched_row(strategy: str, switches: list[str]) -> str:
    """A report row's name: the strategy, then the config switches it ran under (`key=value`,
    see `results.setups.fold_switches`), each after a space; `strategy_of` reads it back."""
    return " ".join([strategy, *switches])


def strategy_of(row: str) -> str:
    """The strategy a report row is of (`switched_row`): its name up to the first space."""
    return row.split(" ", 1)[0]


def display_order(name: str) -> tuple[int, str]:
    """Sort key: the table's order, unknown names last; a row with switches follows its
    strategy's."""
    names, strategy = list(STRATEGIES), strategy_of(name)
    return (names.index(strategy) if strategy in names else len(names), name)


def strategy_colors(names: Iterable[str]) -> dict[str, str]:
    """A colour per strategy of one figure: random and the paper's strategies keep theirs, the
    others take tab20b's colours in table order, so no two of them share one below 21."""
    others = itertools.cycle(_OTHER_COLORS)
    colors = {}
    for name in sorted(set(names), key=display_order):
        strategy = STRATEGIES.get(name)
        colors[name] = strategy.color if strategy and strategy.color else next(others)
    return colors


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


def select_batch(strategy: Strategy, scores: np.ndarray, k: int, *, rng: np.random.Generator,
                 probs: np.ndarray | None = None, hidden: np.ndarray | None = None,
                 candidates: int = 4, beta: float = 1.0) -> np.ndarray:
    """Indices (into `scores`) of the k examples to label, by the strategy's batch rule.

    `top` takes the k highest scores. `power`/`softmax` sample k without replacement with
    weights score^β or exp(β·score). `balanced` takes the highest scores class by class, the
    rarest predicted class first. `kcenter`/`badge` first shortlist the `candidates`·k
    highest scores (0: the whole list), then choose k of them that are far apart in the
    hidden space (k-center, from the highest score) or in gradient space (BADGE)."""
    if strategy.rule == "top":
        return select_top(scores, k)
    if strategy.rule in ("power", "softmax"):
        return stochastic_top_k(np.asarray(scores), k, rng=rng, mode=strategy.rule, beta=beta)
    if strategy.rule == "balanced":
        if probs is None:
            raise ValueError("batch rule 'balanced' needs the label distribution (a choice task)")
        return class_balanced(scores, probs, k)
    if hidden is None:
        raise ValueError(f"batch rule '{strategy.rule}' needs the hidden states")
    size = len(scores) if candidates == 0 else min(len(scores), candidates * k)
    shortlist = select_top(scores, size)  # by score, the highest first
    if strategy.rule == "kcenter":
        return shortlist[kcenter_greedy(hidden[shortlist], k, first=0)]
    if probs is None:
        raise ValueError("BADGE needs the label distribution (a choice task)")
    return shortlist[badge(probs[shortlist], hidden[shortlist], k, rng=rng)]
