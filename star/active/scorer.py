"""Scoring a pool: the forward passes a measure needs, and the measure applied to them.

The base model's scores μ_b are the same in every round, strategy and seed of a setup, so
they are computed once over the whole pool (adapter off) and kept in the on-disk cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from star.active.cache import BaseScoreCache, base_score_folder
from star.active.measures import choice_uncertainty, response_uncertainty
from star.data.batching import Encoded, encode
from star.data.tasks import Example, Task
from star.model.loading import LoadedModel
from star.model.lora import adapter_off
from star.model.passes import choice_outputs, encode_pairs, generate, response_stats


@dataclass(frozen=True)
class Scoring:
    """How to score: the measure, which response it reads, the passes, batch and length."""

    measure: str
    response: str = "own"
    passes: int = 1
    batch_size: int = 32
    max_length: int = 512


def score_examples(loaded: LoadedModel, task: Task, examples: Sequence[Example],
                   scoring: Scoring, masks: torch.Generator | None = None,
                   desc: str = "scoring") -> np.ndarray:
    """Per-pass uncertainty [passes, examples]. With `masks`, the passes are MC-dropout passes
    whose LoRA dropout masks come from that generator; without, one deterministic pass."""
    common = {"batch_size": scoring.batch_size, "desc": desc}
    if not task.generative:
        out = choice_outputs(loaded, task, examples, passes=scoring.passes, masks=masks,
                             max_length=scoring.max_length, **common)
        needs_gold = scoring.measure == "pe" or scoring.response == "gold"
        gold = np.array([task.labels.index(e.gold) for e in examples]) if needs_gold else None
        return choice_uncertainty(out.label_logprob, out.entropy, gold, scoring.measure,
                                  response=scoring.response)
    if scoring.measure == "pe" or scoring.response == "gold":
        encoded = encode_pairs(loaded, task, [(e.prompt, e.response) for e in examples],
                               scoring.max_length)
    else:
        generation = generate(loaded, task, examples, batch_size=scoring.batch_size,
                              max_length=scoring.max_length)
        if masks is None:  # the greedy pass already gave every response token's distribution
            return np.repeat(generation.entropy[None, :], scoring.passes, axis=0)
        eos = loaded.tokenizer.eos_token_id
        encoded = [Encoded(encode(loaded.tokenizer, e.prompt, "", max_length=scoring.max_length,
                                  add_eos=False).prompt, tokens or [eos])
                   for e, tokens in zip(examples, generation.tokens, strict=True)]
    stats = response_stats(loaded, encoded, passes=scoring.passes, masks=masks, **common)
    return response_uncertainty(stats.entropy, stats.logprob, scoring.measure)


def base_scores(loaded: LoadedModel, task: Task, examples: Sequence[Example], scoring: Scoring,
                cache: BaseScoreCache) -> np.ndarray:
    """μ_b of `examples` (adapter disabled): from `cache`, computing only what it lacks."""

    def compute(missing: list[Example]) -> np.ndarray:
        with adapter_off(loaded.model):
            return score_examples(loaded, task, missing, scoring, desc="scoring base model")[0]

    return cache.get(examples, compute)


def base_score_cache(loaded: LoadedModel, task: Task, scoring: Scoring) -> BaseScoreCache:
    """μ_b's cache for one setup: the model's files, the compute dtype, the task's labels and
    the words for them, and the scoring settings that change the numbers."""
    setup = {"model": loaded.fingerprint, "dtype": str(loaded.compute_dtype),
             "labels": task.labels, "choices": task.choices, "answer_type": task.answer_type,
             "max_new_tokens": task.max_new_tokens, "measure": scoring.measure,
             "response": scoring.response, "max_length": scoring.max_length}
    return BaseScoreCache(base_score_folder(), setup)
