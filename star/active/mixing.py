"""Dynamic uncertainty (Eq. 5): min-max normalisation, the schedule λ(t), and the mix.

The base model's uncertainty μ_b and the LoRA model's μ_f are mixed with a weight λ(t) that
falls over the rounds, moving trust from the frozen model to the tuned one. Pure functions.
"""

from __future__ import annotations

import math

import numpy as np


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the pool; a constant list becomes all zeros."""
    values = np.asarray(values, dtype=np.float64)
    span = values.max() - values.min()
    if span == 0:
        return np.zeros_like(values)
    return (values - values.min()) / span


def schedule_weight(t: int, schedule: str, rate: float = 0.1, total: int = 10,
                    constant: float = 0.5) -> float:
    """λ(t), the weight of the base model's uncertainty at acquisition round t (t = 0, 1, ...).

    linear: 1 − rate·(t+1) as in the paper's code; exp: exp(−rate·(t+1));
    cosine: 0.5·(1 + cos(π(t+1)/total)), 0 at the last of `total` rounds; constant: `constant`.
    Clipped to [0, 1].
    """
    if schedule == "linear":
        value = 1.0 - rate * (t + 1)
    elif schedule == "exp":
        value = math.exp(-rate * (t + 1))
    elif schedule == "cosine":
        value = 0.5 * (1.0 + math.cos(math.pi * min(t + 1, total) / total))
    elif schedule == "constant":
        value = constant
    else:
        raise ValueError(f"unknown schedule '{schedule}'")
    return min(1.0, max(0.0, value))


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
