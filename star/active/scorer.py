"""Scoring a pool: the forward passes a measure needs, and the measure applied to them.

A pool is scored in parts of `part_size` examples. Each finished part is saved, so a killed
pass resumes from the parts it has; the parts of a wave are shared between processes. A part
is computed the same way whoever computes it and whenever (its MC-dropout masks come from a
generator of its own), so neither a resume nor more processes change a score. Memory stays
that of one part, plus one row of numbers per example.

The base model's scores μ_b are the same in every round, strategy and seed of a setup, so
they are computed once over the whole pool (adapter off) and kept in the on-disk cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from star.active.cache import BaseScoreCache, base_score_folder
from star.active.measures import (
    choice_uncertainty,
    label_probs,
    needs_choice_task,
    reads_gold,
    response_uncertainty,
)
from star.active.runfolder import ScoringParts
from star.active.shortlist import merge_passes, merge_rows, shortlist_rows
from star.data.batching import Encoded
from star.data.tasks import Example, Task
from star.files import digest
from star.model.loading import LoadedModel
from star.model.lora import adapter_off
from star.model.passes import (
    choice_outputs,
    encode_pairs,
    generate,
    generation_prompt,
    predict,
    response_stats,
)
from star.processes import ALONE, Processes, map_spans


@dataclass(frozen=True)
class Scoring:
    """How to score: the measure, which response it reads, the passes, batch and length."""

    measure: str
    response: str = "own"
    passes: int = 1
    batch_size: int = 32
    max_length: int = 512
    part_size: int = 1024


@dataclass
class PoolScores:
    """What one scoring pass over examples yields."""

    passes: np.ndarray
    """[passes, examples] uncertainty per pass ([1, examples] for BALD, a statistic of all)."""
    probs: np.ndarray | None = None
    """[examples, labels]: the label distribution, mean over passes (choice tasks)."""
    hidden: np.ndarray | None = None
    """[examples, hidden size]: the answer position's hidden state (with `features`)."""


def score_pool(loaded: LoadedModel, task: Task, examples: Sequence[Example], scoring: Scoring, *,
               masks: torch.Generator | None = None, features: bool = False,
               desc: str = "scoring") -> PoolScores:
    """Uncertainty of `examples`. With `masks`, the passes are MC-dropout passes whose LoRA
    dropout masks come from that generator; without, one deterministic pass. `features` also
    keeps what the diversity rules read (label distribution, hidden state), from the same pass."""
    common = {"batch_size": scoring.batch_size, "features": features, "desc": desc}
    if not task.generative:
        out = choice_outputs(loaded, task, examples, passes=scoring.passes, masks=masks,
                             max_length=scoring.max_length, **common)
        gold = (np.array([task.labels.index(e.gold) for e in examples])
                if reads_gold(scoring.measure, scoring.response) else None)
        uncertainty = choice_uncertainty(out.label_logprob, out.entropy, gold, scoring.measure,
                                         response=scoring.response)
        return PoolScores(uncertainty, label_probs(out.label_logprob).mean(axis=0), out.hidden)
    if needs_choice_task(scoring.measure):
        raise ValueError(f"'{scoring.measure}' needs a choice task (a label set)")
    hidden = None
    if reads_gold(scoring.measure, scoring.response):
        encoded = encode_pairs(loaded, task, [(e.prompt, e.response) for e in examples],
                               scoring.max_length)
    else:
        generation = generate(loaded, task, examples, batch_size=scoring.batch_size,
                              max_length=scoring.max_length, features=features)
        hidden = generation.hidden
        if masks is None and scoring.measure == "me":  # greedy decoding gave every token's ME
            return PoolScores(np.repeat(generation.entropy[None, :], scoring.passes, axis=0),
                              hidden=hidden)
        eos = loaded.tokenizer.eos_token_id
        encoded = [Encoded(generation_prompt(loaded, task, e.prompt, scoring.max_length),
                           tokens or [eos])
                   for e, tokens in zip(examples, generation.tokens, strict=True)]
    common["features"] = features and hidden is None
    stats = response_stats(loaded, encoded, passes=scoring.passes, masks=masks, **common)
    uncertainty = response_uncertainty(stats.entropy, stats.logprob, scoring.measure,
                                       stats.mutual_information)
    return PoolScores(uncertainty, hidden=stats.hidden if hidden is None else hidden)


def score_in_parts(loaded: LoadedModel, task: Task, examples: Sequence[Example],
                   scoring: Scoring, *, masks: Callable[[int], torch.Generator] | None = None,
                   features: bool = False, processes: Processes = ALONE,
                   store: ScoringParts | None = None, desc: str = "scoring") -> PoolScores:
    """`score_pool` of `examples`, part by part: part p's MC-dropout masks come from
    `masks(p)`, finished parts are kept in `store` and read back from it on a resume."""
    size = scoring.part_size
    count = -(-len(examples) // size)

    def key(span: Sequence[Example]) -> str:
        return digest([e.id for e in span])

    def compute(part: int, span: list[Example]) -> tuple[str, PoolScores]:
        named = desc if count == 1 else f"{desc}, part {part + 1}/{count}"
        return key(span), score_pool(loaded, task, span, scoring, features=features, desc=named,
                                     masks=None if masks is None else masks(part))

    def saved(part: int) -> tuple[str, PoolScores] | None:
        if store is None or not store.path(part).exists():
            return None
        span_key = key(examples[part * size:(part + 1) * size])
        arrays = store.read(part, span_key)
        return None if arrays is None else (span_key, PoolScores(**arrays))

    def save(part: int, keyed: tuple[str, PoolScores]) -> None:
        span_key, scores = keyed
        if store is not None:
            store.write(part, span_key, {name: value for name, value in vars(scores).items()
                                         if value is not None})

    parts = [scores for _, scores in map_spans(examples, size, compute, processes=processes,
                                               saved=saved, save=save)]
    return PoolScores(
        np.concatenate([p.passes for p in parts], axis=1),
        probs=None if parts[0].probs is None else np.concatenate([p.probs for p in parts]),
        hidden=None if parts[0].hidden is None else np.concatenate([p.hidden for p in parts]))


def score_with_shortlist(loaded: LoadedModel, task: Task, examples: Sequence[Example],
                         scoring: Scoring, *, size: int,
                         rank: Callable[[np.ndarray], np.ndarray],
                         masks: Callable[[int], torch.Generator],
                         first_masks: Callable[[int], torch.Generator], features: bool = False,
                         processes: Processes = ALONE, store: ScoringParts | None = None,
                         desc: str = "scoring") -> tuple[PoolScores, np.ndarray]:
    """`score_in_parts` with the MC passes on a shortlist (`shortlist`): one MC pass over
    `examples` (part p's masks from `first_masks(p)`), then `scoring.passes` passes over the
    `size` examples whose one-pass scores ([1, n]) `rank` puts highest, part p of those with
    masks from `masks(p)`, as a pass over the whole pool draws them. Returns the merged scores
    and the shortlist's positions.

    Every mask is a function of (seed, round, phase, part) and the shortlist of the one pass's
    scores, so a resume replays both passes exactly; the one pass keeps its parts in
    `store.first_pass()`, the shortlist's passes in `store` itself."""
    if size < 1:
        raise ValueError(f"a shortlist of {size} examples has none to pick from")
    common = {"features": features, "processes": processes}
    first = score_in_parts(loaded, task, examples, replace(scoring, passes=1), masks=first_masks,
                           store=None if store is None else store.first_pass(),
                           desc=f"{desc}, one pass", **common)
    rows = shortlist_rows(rank(first.passes), size)
    short = score_in_parts(loaded, task, [examples[i] for i in rows], scoring, masks=masks,
                           store=store, desc=f"{desc}, shortlist", **common)
    return PoolScores(merge_passes(first.passes, short.passes, rows),
                      probs=merge_rows(first.probs, short.probs, rows),
                      hidden=merge_rows(first.hidden, short.hidden, rows)), rows


def score_examples(loaded: LoadedModel, task: Task, examples: Sequence[Example],
                   scoring: Scoring, masks: torch.Generator | None = None,
                   desc: str = "scoring") -> np.ndarray:
    """Per-pass uncertainty [passes, examples] (see `score_pool`)."""
    return score_pool(loaded, task, examples, scoring, masks=masks, desc=desc).passes


def base_scores(loaded: LoadedModel, task: Task, examples: Sequence[Example], scoring: Scoring,
                cache: BaseScoreCache, processes: Processes = ALONE) -> np.ndarray:
    """μ_b of `examples` (adapter disabled): from `cache`, computing only what it lacks."""

    def compute(missing: list[Example]) -> np.ndarray:
        with adapter_off(loaded.model):
            return score_examples(loaded, task, missing, scoring, desc="scoring base model")[0]

    return cache.get(examples, compute, part_size=scoring.part_size, processes=processes)


def _setup(loaded: LoadedModel, task: Task, max_length: int) -> dict[str, object]:
    """What every cached base-model number depends on besides the example: the model's files,
    the hardware (on a CPU, which one), attention kernel and compute dtype, the task's labels
    and the words for them, and the length limits."""
    return {"model": loaded.fingerprint, "hardware": loaded.hardware, "cpu": loaded.cpu,
            "attention": loaded.attention,
            "dtype": str(loaded.compute_dtype),
            "labels": task.labels, "choices": task.choices, "answer_type": task.answer_type,
            "max_new_tokens": task.max_new_tokens, "max_length": max_length}


def base_score_cache(loaded: LoadedModel, task: Task, scoring: Scoring) -> BaseScoreCache:
    """μ_b's cache for one setup and measure."""
    setup = {**_setup(loaded, task, scoring.max_length), "measure": scoring.measure,
             "response": scoring.response}
    return BaseScoreCache(base_score_folder(), setup)


def zero_shot_correct(loaded: LoadedModel, task: Task, examples: Sequence[Example], *,
                      batch_size: int, max_length: int, part_size: int = 1024,
                      processes: Processes = ALONE) -> np.ndarray:
    """1.0 or 0.0 per example: is the base model's answer (adapter off) right? The zero-label
    point of every learning curve; the same for every strategy and seed, so cached like μ_b."""
    cache = BaseScoreCache(base_score_folder(), {**_setup(loaded, task, max_length),
                                                 "kind": "zero_shot"})

    def compute(missing: list[Example]) -> np.ndarray:
        with adapter_off(loaded.model):
            answers = predict(loaded, task, missing, batch_size=batch_size, max_length=max_length)
        return np.array([float(bool(p.correct)) for p in answers])

    return cache.get(examples, compute, part_size=part_size, processes=processes)
