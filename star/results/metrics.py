"""Learning-curve metrics beside AUC (`star.active.learning_curve`): RIPL (Eq. 8), the spread
over seeds, calibration."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool],
                               n_bins: int = 15) -> float:
    """ECE over `n_bins` equal-width confidence bins: Σ_b (n_b / N) · |accuracy_b − confidence_b|.

    A confidence of exactly 1 falls in the last bin.
    """
    conf = np.asarray(confidence, dtype=float)
    hits = np.asarray(correct, dtype=float)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        inside = bins == b
        total += inside.sum() * abs(hits[inside].mean() - conf[inside].mean())
    return float(total / len(conf))


def brier_score(confidence: Sequence[float], correct: Sequence[bool]) -> float:
    """Top-label Brier score: mean squared gap between confidence and correctness (0 is best).

    Defined from the predicted answer alone, so it also covers generative tasks.
    """
    conf = np.asarray(confidence, dtype=float)
    return float(np.mean((conf - np.asarray(correct, dtype=float)) ** 2))


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool],
                     n_bins: int = 15) -> list[dict[str, float]]:
    """Per non-empty bin: its range, count, mean confidence and accuracy (reliability diagram)."""
    conf = np.asarray(confidence, dtype=float)
    hits = np.asarray(correct, dtype=float)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    return [{"low": b / n_bins, "high": (b + 1) / n_bins, "count": int((bins == b).sum()),
             "confidence": float(conf[bins == b].mean()), "accuracy": float(hits[bins == b].mean())}
            for b in np.unique(bins)]


def correlation_matrix(columns: Sequence[Sequence[float]]) -> np.ndarray:
    """Pearson correlations between the given value lists (one per iteration)."""
    return np.corrcoef(np.asarray(columns, dtype=float))
