"""Active learning by learning (Hsu & Lin 2015, AAAI): `auto`, a bandit over strategies.

No strategy wins everywhere: uncertainty fails at a cold start, typicality once the model
knows something, and random is hard to beat on balanced data. ALBL hedges: each strategy (an
arm, `random` always one of them) advises which example to buy, the example is drawn from the
arms' mixture, and Exp4.P (Beygelzimer et al. 2011) moves weight towards the arms whose picks
came with a better tuned model. We follow libact's `active_learning_by_learning.py` (from the
authors' lab): Exp4.P's actions are the N arms, so the floor p_min is on the arms,
p_i = (1 − N·p_min)·w_i/W + p_min, and every arm, random included, keeps at least p_min of
every draw; an arm's credit for a pick is ξ_i(x)/q(x) (its advice for x over the mixture's
probability of x), and its variance term 1/p_i, which bounds the credit's second moment
(1/q(x) ≤ 1/p_i for a ranked arm's advice x; (1/R²)·Σ_x 1/q(x) ≤ 1/p_random for random's).

Batch mode, which STAR needs (a round trains one adapter for `step` labels):
- A round is `step` Exp4.P steps whose rewards arrive together. The arms' probabilities stay
  fixed within the round; each pick draws an arm, which advises one example: a ranked arm its
  best example not picked yet (libact's advice, a one-hot on the arm's next query), random one
  uniformly from the examples not picked yet. q(x) is then the exact probability that this
  draw chose x (the mixture of the advice at that draw), and the picks are without replacement.
- The reward of all the round's picks is the round's tuned model's importance-weighted accuracy
  (ALBL's IW-ACC) on every label the bandit bought so far: (1/T) Σ_τ ω_τ [f(x_τ) = y_τ], with T
  the picks of the whole run; under `train.balance: classes`, with each class weighing alike
  (`iw_accuracy`). ALBL draws over all n examples, weighs a draw by 1/(n·q), and
  lets a draw that lands on a labeled example count for free; a batch cannot wait for such
  redraws, so a draw here is over the R examples unlabeled at the time, ω = 1/(R·q), and
  E[ω·correct] is f's accuracy on those R examples (ω = 1 for a uniform draw). With a pool of
  10× the budget, R stays within 10 % of n. As in ALBL, f was trained on these labels, so
  the estimate is optimistic (a training accuracy); the warm start is not the bandit's and
  does not count.
- After the round, each of its picks is one Exp4.P update with that reward:
  ln w_i += (p_min/2)·Σ_picks (r·ξ_i(x)/q(x) + √(ln(N/δ)/(N·T)) / p_i).

Pure functions and a small state that goes to JSON exactly (floats round-trip), so a resumed
run replays from results.json and the (seed, round, phase) draws alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from star.data.tasks import class_weights

RANDOM = "random"
"""The arm that advises uniformly: it keeps every example's probability of being bought above 0,
which the importance weights need, and it is the hedge the other arms must beat."""


@dataclass(frozen=True)
class BanditState:
    """What the bandit carries from round to round: its arms and their log-weights ln w_i."""

    arms: tuple[str, ...]
    log_weights: tuple[float, ...]

    @classmethod
    def start(cls, arms: Sequence[str]) -> BanditState:
        """Equal weights: no arm is trusted before its picks have been rewarded."""
        if RANDOM not in arms or len(set(arms)) != len(arms):
            raise ValueError(f"the arms must be distinct and include {RANDOM}, got {list(arms)}")
        return cls(tuple(arms), (0.0,) * len(arms))

    def to_json(self) -> dict[str, Any]:
        return {"arms": list(self.arms), "log_weights": list(self.log_weights)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BanditState:
        return cls(tuple(data["arms"]), tuple(float(v) for v in data["log_weights"]))


@dataclass(frozen=True)
class Pick:
    """One example the bandit bought, and what its reward and update need."""

    id: str
    arm: str
    """The arm drawn for this pick, whose advice was taken."""
    advisers: tuple[str, ...]
    """Every ranked arm whose advice at this draw was this example (the drawn one included,
    unless it was random); random advises every example a little."""
    probability: float
    """q: the probability that this draw chose this example."""
    candidates: int
    """R: the examples not labeled or picked when this draw was made."""

    @property
    def importance(self) -> float:
        """ω = 1/(R·q): 1 for a uniform draw, so IW-ACC is on an accuracy's scale."""
        return 1.0 / (self.candidates * self.probability)

    def credit(self, arm: str) -> float:
        """ξ_arm(x)/q(x): how much of this draw's probability was the arm's advice, unbiased
        (its mean over the draw is the arm's advice summed, 1)."""
        advice = 1.0 / self.candidates if arm == RANDOM else float(arm in self.advisers)
        return advice / self.probability

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "arm": self.arm, "advisers": list(self.advisers),
                "probability": self.probability, "candidates": self.candidates}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Pick:
        return cls(str(data["id"]), str(data["arm"]), tuple(data["advisers"]),
                   float(data["probability"]), int(data["candidates"]))


def default_floor(arms: int, horizon: int) -> float:
    """libact's p_min, √(ln N / (N·T)) for N arms and T picks: Exp4.P's rate with K = N."""
    if arms < 1 or horizon < 1:
        raise ValueError(f"need arms and picks, got {arms} arms and {horizon} picks")
    return math.sqrt(math.log(arms) / (arms * horizon))


def probabilities(state: BanditState, floor: float) -> np.ndarray:
    """Each arm's share of the next draws [arms]: (1 − N·p_min)·w_i/W + p_min."""
    count = len(state.arms)
    if not 0 <= floor <= 1 / count:
        raise ValueError(f"the floor must be in [0, 1/{count}], got {floor}")
    log_weights = np.asarray(state.log_weights)
    weights = np.exp(log_weights - log_weights.max())  # w/W without overflow
    return (1 - count * floor) * weights / weights.sum() + floor


def draw(arms: Sequence[str], shares: np.ndarray, rankings: Mapping[str, np.ndarray],
         ids: Sequence[str], count: int, *, rng: np.random.Generator
         ) -> tuple[np.ndarray, list[Pick]]:
    """`count` of the unlabeled examples `ids`, drawn without replacement from the arms'
    mixture: per pick an arm by `shares` [arms], then its advice. rankings: each arm but random,
    positions into `ids`, best first, distinct and at least `count` long (a batch rule's picks
    in pick order). Returns the positions and the picks, both in draw order."""
    if not 0 < count <= len(ids):
        raise ValueError(f"cannot draw {count} of {len(ids)} examples")
    for arm in arms:
        if arm != RANDOM and len(np.unique(rankings[arm])) < count:
            raise ValueError(f"arm '{arm}' ranks fewer than {count} distinct examples")
    taken = np.zeros(len(ids), dtype=bool)
    positions: list[int] = []
    picks: list[Pick] = []
    random_share = float(shares[arms.index(RANDOM)])
    for _ in range(count):
        candidates = len(ids) - len(positions)
        advice = {arm: int(next(i for i in rankings[arm] if not taken[i]))
                  for arm in arms if arm != RANDOM}
        arm = arms[int(rng.choice(len(arms), p=shares))]
        position = (int(np.flatnonzero(~taken)[rng.integers(candidates)]) if arm == RANDOM
                    else advice[arm])
        advisers = tuple(a for a in arms if a != RANDOM and advice[a] == position)
        probability = (sum(float(shares[arms.index(a)]) for a in advisers)
                       + random_share / candidates)
        taken[position] = True
        positions.append(position)
        picks.append(Pick(ids[position], arm, advisers, probability, candidates))
    return np.array(positions, dtype=np.intp), picks


def iw_accuracy(picks: Sequence[Pick], correct: Sequence[bool], horizon: int,
                golds: Sequence[str] | None = None) -> float:
    """ALBL's reward: (1/T) Σ ω·[correct] over every pick so far (T: the run's picks), so it
    grows towards the accuracy as the budget is spent, as in the paper.

    With the picks' `golds`, each class weighs alike, as the loss does under `train.balance:
    classes`: pick τ's ω is scaled by Ω / (C·Ω_c), Ω the picks' summed ω, Ω_c that of its
    class, C the classes among them. The reward is then Ω/T times the importance-weighted mean
    recall over the classes, where the plain one is Ω/T times the accuracy: on a skewed pool
    the plain reward is mostly the common class's accuracy and pays an arm for not finding
    the rare one, while the study measures macro-F1 on a balanced test."""
    if len(picks) != len(correct) or (golds is not None and len(golds) != len(picks)):
        raise ValueError(f"{len(picks)} picks but {len(correct)} answers"
                         + ("" if golds is None else f" and {len(golds)} labels"))
    weights = [p.importance for p in picks]
    if golds is not None:
        weights = [w * b for w, b in zip(weights, class_weights(golds, weights), strict=True)]
    return sum(w for w, right in zip(weights, correct, strict=True) if right) / horizon


def update(state: BanditState, shares: np.ndarray, picks: Sequence[Pick], reward: float, *,
           floor: float, delta: float, horizon: int) -> BanditState:
    """Exp4.P after a round: one step per pick, all with the round's reward and shares [arms]
    (the probabilities the picks were drawn with)."""
    count = len(state.arms)
    bonus = math.sqrt(math.log(count / delta) / (count * horizon))
    credit = np.array([[pick.credit(arm) for arm in state.arms] for pick in picks])  # [picks, arms]
    gain = reward * credit.sum(axis=0) + len(picks) * bonus / np.asarray(shares)
    log_weights = np.asarray(state.log_weights) + floor / 2 * gain
    return BanditState(state.arms, tuple(float(v) for v in log_weights))
