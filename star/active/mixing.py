"""Dynamic uncertainty (Eq. 5): min-max normalisation, the schedule λ(t), and the mix.

The base model's uncertainty μ_b and the LoRA model's μ_f are mixed with a weight λ(t) that
falls over the rounds, moving trust from the frozen model to the tuned one. The paper's λ(t)
starts at 0.9 whatever the base model knows; the `evidence` schedule scales it by the base
model's skill on the labels so far (`base_skill`), so a prompt that scores at or below chance
is not heard at all. Pure functions.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the pool; a constant list becomes all zeros."""
    values = np.asarray(values, dtype=np.float64)
    span = values.max() - values.min()
    if span == 0:
        return np.zeros_like(values)
    return (values - values.min()) / span


def schedule_weight(t: int, schedule: str, rate: float = 0.1, total: int = 10,
                    constant: float = 0.5, skill: float = 1.0) -> float:
    """λ(t), the weight of the base model's uncertainty at acquisition round t (t = 0, 1, ...).

    linear: 1 − rate·(t+1) as in the paper's code; exp: exp(−rate·(t+1));
    cosine: 0.5·(1 + cos(π(t+1)/total)), 0 at the last of `total` rounds; constant: `constant`;
    evidence: skill·(1 − rate·(t+1)), `skill` in [0, 1] from `base_skill`: the paper's λ(t) for
    a base model always right, 0 for one no better than chance. Clipped to [0, 1].
    """
    if schedule == "linear":
        value = 1.0 - rate * (t + 1)
    elif schedule == "evidence":
        if not 0.0 <= skill <= 1.0:
            raise ValueError(f"skill {skill} is outside [0, 1]")
        value = skill * (1.0 - rate * (t + 1))
    elif schedule == "exp":
        value = math.exp(-rate * (t + 1))
    elif schedule == "cosine":
        value = 0.5 * (1.0 + math.cos(math.pi * min(t + 1, total) / total))
    elif schedule == "constant":
        value = constant
    else:
        raise ValueError(f"unknown schedule '{schedule}'")
    return min(1.0, max(0.0, value))


def chance_agreement(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """Σ_c p(c)·q(c), p(c) the share of answer c among the predictions and q(c) among the
    labels: the accuracy expected of answers given independently of the examples in the same
    shares (Cohen's chance agreement). A model that always gives one answer scores exactly its
    share of the labels, so on skewed labels chance is above 1/classes."""
    if len(predicted) != len(gold) or not len(gold):
        raise ValueError("chance agreement needs one prediction per label, and some labels")
    shares = Counter(gold)
    return sum(count * shares[answer] for answer, count in Counter(predicted).items()) / len(gold) ** 2


def base_skill(accuracy: float, chance: float) -> float:
    """max(0, (accuracy − chance) / (1 − chance)): the share of the way from chance to always
    right (Cohen's κ when `chance` is `chance_agreement` of the same predictions), 0 at or below
    chance. 0 also when chance is 1 (one answer, one label throughout): the labels then hold no
    evidence that the model tells the answers apart."""
    if chance >= 1.0:
        return 0.0
    return max(0.0, (accuracy - chance) / (1.0 - chance))


def dynamic_score(base: np.ndarray, full: np.ndarray, weight: float, mix: str = "weighted",
                  normalise: str = "pool") -> np.ndarray:
    """Eq. 5: λ·μ_b + (1 − λ)·μ_f, or the variant μ_f − μ_b for `subtract`.

    normalise `pool`: both lists min-max normalised over the unlabeled pool given here;
    `paper` (what the paper's code does): `base` arrives min-max normalised over the whole
    pool (see `normalise_base`) and `full` is used raw.
    """
    if normalise == "pool":
        base, full = minmax(base), minmax(full)
    if mix == "subtract":
        return full - base
    return weight * base + (1.0 - weight) * full


def normalise_base(pool_base: np.ndarray, unlabeled: np.ndarray, normalise: str) -> np.ndarray:
    """μ_b of the unlabeled positions, min-max normalised over the whole pool for `paper`."""
    values = minmax(pool_base) if normalise == "paper" else np.asarray(pool_base, dtype=float)
    return values[unlabeled]
