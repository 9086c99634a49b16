"""Acquisition scores as pure functions of model outputs (no model, no I/O here).

ME (Eq. 2) sums the full-vocabulary entropy over response tokens; PE (Eq. 3) is the negative
log-likelihood of the gold response; dynamic uncertainty (Eq. 5) mixes the base model's and
the full model's scores with a weight λ(t) that falls over the rounds.
"""

from __future__ import annotations

import math

import numpy as np
import torch

ENTROPY_CLIP = 1e-6
"""Probabilities are clipped here inside the log, as in the paper's code."""


def token_entropy(logits: torch.Tensor, clip: float = ENTROPY_CLIP) -> torch.Tensor:
    """Entropy in nats of softmax(logits) over the last axis, computed in fp32.

    logits: [..., vocab] -> [...]
    """
    probs = torch.softmax(logits.float(), dim=-1)
    return -(probs * torch.log(probs.clamp_min(clip))).sum(dim=-1)


def token_logprob(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under softmax(logits), fp32. logits [M, vocab], targets [M] -> [M]."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


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
    cosine: from 1 to 0 over `total` rounds; constant: `constant`. Clipped to [0, 1].
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


def dynamic_score(base: np.ndarray, full: np.ndarray, weight: float,
                  mix: str = "weighted") -> np.ndarray:
    """Eq. 5 on min-max normalised lists: λ·μ_b + (1 − λ)·μ_f, or μ_f − μ_b for `subtract`."""
    base_n, full_n = minmax(base), minmax(full)
    if mix == "subtract":
        return full_n - base_n
    return weight * base_n + (1.0 - weight) * full_n
