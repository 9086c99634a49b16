"""Learning-curve metrics: AUC, RIPL (Eq. 8) and their spread over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def auc(n_labeled: Sequence[float], accuracy: Sequence[float]) -> float:
    """Trapezoid area under accuracy vs labels, over the span of the labels axis.

    A flat curve at 0.7 has AUC 0.7; a single point is its own accuracy.
    """
    x, y = np.asarray(n_labeled, dtype=float), np.asarray(accuracy, dtype=float)
    if len(x) == 1:
        return float(y[0])
    span = x[-1] - x[0]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / span)


def ripl(auc_active: float, auc_passive: float) -> float:
    """Relative improvement over passive learning: share of the gap to a perfect AUC closed."""
    if auc_passive >= 1.0:
        return 0.0
    return (auc_active - auc_passive) / (1.0 - auc_passive)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return float(array.mean()), std
