"""Uncertainty measures as pure functions of what the forward passes recorded.

ME (Eq. 2) is the full-vocabulary entropy summed over a response's tokens; PE (Eq. 3) is the
negative log-likelihood of the gold response. Arrays are [passes, examples]; choice outputs
carry a label axis ([passes, examples, labels]) and the measure picks one label from it.
"""

from __future__ import annotations

import numpy as np

MEASURES = ("me", "pe")
RESPONSES = ("own", "gold")
"""Which response ME reads: the model's own answer (label-free), or the teacher-forced gold
one as the paper's code does (which lets the label leak into a label-free criterion)."""


def choice_uncertainty(label_logprob: np.ndarray, entropy: np.ndarray, gold: np.ndarray | None,
                       measure: str, response: str = "own") -> np.ndarray:
    """ME or PE of a choice task from the label-slot outputs.

    label_logprob, entropy: [passes, examples, labels]; gold: [examples] label indices
    (needed by PE and by ME on the gold response) -> [passes, examples].
    """
    rows = np.arange(label_logprob.shape[1])
    if measure == "pe" or response == "gold":
        if gold is None:
            raise ValueError(f"{measure} on the gold response needs gold labels")
        if measure == "pe":
            return -label_logprob[:, rows, gold]
        return entropy[:, rows, gold]
    predicted = label_logprob.argmax(axis=2)  # [passes, examples]
    return np.take_along_axis(entropy, predicted[:, :, None], axis=2)[:, :, 0]


def response_uncertainty(entropy: np.ndarray, logprob: np.ndarray, measure: str) -> np.ndarray:
    """ME (summed token entropy) or PE (negative log-likelihood) of scored responses.

    entropy, logprob: [passes, examples] sums over each response's tokens.
    """
    return -logprob if measure == "pe" else entropy
