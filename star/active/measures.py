"""Uncertainty measures as pure functions of what the forward passes recorded.

The paper's two: ME (Eq. 2), the full-vocabulary entropy summed over a response's tokens, and
PE (Eq. 3), the negative log-likelihood of the gold response. Beyond the paper, for choice
tasks, three measures of the label distribution (the label-slot probabilities renormalised
over the label set) as small-text and baal offer them, and BALD, the mutual information
between the prediction and the LoRA dropout mask (Houlsby et al. 2011; Gal et al. 2017).
Arrays are [passes, examples]; choice outputs carry a label axis ([passes, examples, labels]).
"""

from __future__ import annotations

import numpy as np

LABEL_MEASURES = ("lc", "margin", "entropy")
"""Least confidence 1 − max p, margin 1 − (p₁ − p₂) and label entropy −Σ p log p: they read a
label distribution, so they need a choice task."""
MEASURES = ("pe", "me", *LABEL_MEASURES, "bald")
IN_NATS = ("pe", "me", "entropy", "bald")
"""The measures that are entropies or log-likelihoods (natural log), so in nats; lc and margin
are differences of probabilities."""
PROB_CLIP = 1e-12
"""Probabilities are clipped at this value inside the log only, so p = 0 adds 0."""


def base_measure(measure: str, generative: bool) -> str:
    """The measure of the frozen base model mixed in by `dynamic`. The base model has no
    dropout to sample, so its BALD is 0 everywhere; its predictive entropy (label entropy,
    or ME for a generative task) stands in. Every other measure is its own base measure."""
    if measure != "bald":
        return measure
    return "me" if generative else "entropy"


def reads_gold(measure: str, response: str) -> bool:
    """Whether scoring reads the gold answers of the examples it scores: PE always (it is their
    likelihood), any measure told to score the teacher-forced gold response instead of the
    model's own (`uncertainty.response: gold`, as the paper's code does for ME)."""
    return measure == "pe" or response == "gold"


def needs_choice_task(measure: str | None) -> bool:
    return measure in LABEL_MEASURES


def label_probs(label_logprob: np.ndarray) -> np.ndarray:
    """Softmax over the label axis: the label distribution, renormalised over the label set."""
    shifted = label_logprob - label_logprob.max(axis=-1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=-1, keepdims=True)


def entropy_of(probs: np.ndarray) -> np.ndarray:
    """Entropy in nats over the last axis."""
    return -(probs * np.log(np.maximum(probs, PROB_CLIP))).sum(axis=-1)


def label_uncertainty(probs: np.ndarray, measure: str) -> np.ndarray:
    """lc, margin or entropy of label distributions [..., labels] -> [...]."""
    if measure == "lc":
        return 1.0 - probs.max(axis=-1)
    if measure == "margin":
        top_two = np.sort(probs, axis=-1)[..., -2:]
        return 1.0 - (top_two[..., 1] - top_two[..., 0])
    if measure == "entropy":
        return entropy_of(probs)
    raise ValueError(f"'{measure}' is not a label measure ({', '.join(LABEL_MEASURES)})")


def bald(probs: np.ndarray) -> np.ndarray:
    """BALD of K passes' label distributions [passes, examples, labels] -> [examples]:
    H[mean_k p_k] − mean_k H[p_k]. Passes that agree give 0; disagreement gives up to log C.
    Tiny negative values from rounding are clipped to 0."""
    value = entropy_of(probs.mean(axis=0)) - entropy_of(probs).mean(axis=0)
    return np.maximum(value, 0.0)


def choice_uncertainty(label_logprob: np.ndarray, entropy: np.ndarray, gold: np.ndarray | None,
                       measure: str, response: str = "own") -> np.ndarray:
    """The uncertainty of a choice task from the label-slot outputs.

    label_logprob, entropy: [passes, examples, labels]; gold: [examples] label indices
    (needed by PE and by ME on the gold response) -> [passes, examples] (BALD, a statistic
    of all passes together: [1, examples]).
    """
    if measure in LABEL_MEASURES:
        return label_uncertainty(label_probs(label_logprob), measure)
    if measure == "bald":
        return bald(label_probs(label_logprob))[None, :]
    rows = np.arange(label_logprob.shape[1])
    if reads_gold(measure, response):
        if gold is None:
            raise ValueError(f"{measure} on the gold response needs gold labels")
        if measure == "pe":
            return -label_logprob[:, rows, gold]
        return entropy[:, rows, gold]
    predicted = label_logprob.argmax(axis=2)  # [passes, examples]
    return np.take_along_axis(entropy, predicted[:, :, None], axis=2)[:, :, 0]


def response_uncertainty(entropy: np.ndarray, logprob: np.ndarray, measure: str,
                         mutual_information: np.ndarray | None = None) -> np.ndarray:
    """ME (summed token entropy), PE (negative log-likelihood) or BALD (summed per-token mutual
    information, [examples]) of scored responses; entropy, logprob: [passes, examples]."""
    if measure == "bald":
        if mutual_information is None:
            raise ValueError("BALD needs the per-token mutual information of MC passes")
        return np.maximum(mutual_information, 0.0)[None, :]
    if measure in LABEL_MEASURES:
        raise ValueError(f"'{measure}' needs a choice task (a label set)")
    return -logprob if measure == "pe" else entropy
