"""When to stop labeling: agreement of consecutive rounds' predictions (Bloodgood &
Vijay-Shanker 2009). Predictions on a fixed set that stop changing mean labels stopped
changing the model; κ ≥ 0.99 averaged over the last 3 round pairs is the signal."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

STOP_KAPPA = 0.99
STOP_WINDOW = 3


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float:
    """Cohen's κ of two labelings of the same items: (p_o − p_e) / (1 − p_e); 1.0 when both
    give one and the same label throughout (p_e = 1)."""
    if len(first) != len(second) or not first:
        raise ValueError("κ needs two labelings of the same, non-empty list of items")
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    counts_a, counts_b = Counter(first), Counter(second)
    expected = sum(counts_a[label] * counts_b[label] for label in counts_a) / n**2
    if expected == 1.0:
        return 1.0
    return (observed - expected) / (1.0 - expected)


def stop_advised(kappas: Sequence[float | None]) -> bool:
    """True once the last `STOP_WINDOW` κ values all exist and average at least `STOP_KAPPA`."""
    window = list(kappas[-STOP_WINDOW:])
    return (len(window) == STOP_WINDOW and None not in window
            and sum(window) / STOP_WINDOW >= STOP_KAPPA)
