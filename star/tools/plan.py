"""`star plan`: what a run will cost before it starts: FLOPs, time and device-hours per round.

The cost of every phase follows from the config (pool, test set, warm start, step, budget,
epochs, strategy, MC passes, shortlist, prompt guard, bandit arms), the model's architecture
(`star.model.flops`) and the mean token lengths of the data; time is FLOPs / (devices × peak
FLOP/s × utilisation). Inference and training run at different utilisation (bench measures
both), so each has its own MFU. A device is a GPU or a whole CPU: bench's matmul peak is of all
its threads.

What a plan leaves out: typiclust's k-means, numpy on the hidden states kept from their one
pass: pool × clusters × hidden size × 2 FLOPs a Lloyd step, at most 100 steps, once a round
(for the savings presets' 1,280 × 576 states and 32 to 128 clusters at most 0.08 TFLOP over a
run, about 1 % of that pass; `typicality` measured 20 s for 10^5 examples and 144 clusters on
one thread, so a fraction of a second here); model loading; writing scores and batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from star.active.loop import choosers, total_rounds
from star.active.measures import reads_gold
from star.active.prompt_guard import class_counts, within_reach
from star.active.strategies import Strategy, get_strategy
from star.config import StarConfig
from star.data.batching import encode
from star.data.sources import load_task
from star.data.tasks import Example, Task
from star.errors import ConfigError
from star.model.flops import ParameterCounts, counts_of_architecture
from star.progress import log
from star.seeding import numpy_rng

KNOWN_ARCHITECTURES: dict[str, dict[str, int]] = {
    "meta-llama/Llama-2-7b-hf": {"hidden_size": 4096, "intermediate_size": 11008,
                                 "num_hidden_layers": 32, "num_attention_heads": 32,
                                 "num_key_value_heads": 32, "vocab_size": 32000},
}
"""config.json fields of the paper's model, so its runs can be planned offline."""
SAMPLE = 500
"""Examples whose token lengths are averaged."""
PHASES = ("score", "train", "guard", "evaluate")
"""A round's phases, in the order the table shows them."""


@dataclass(frozen=True)
class Lengths:
    """Mean token counts: pool prompts, gold responses, test prompts; label tokens."""

    prompt: float
    response: float
    test_prompt: float
    label_tokens: list[int]


@dataclass(frozen=True)
class Hardware:
    devices: int
    peak: float
    """FLOP/s of one device at the compute dtype."""
    mfu: float
    """Utilisation of teacher-forced passes (scoring, evaluation, prefill)."""
    train_mfu: float
    generation_mfu: float
    """Utilisation of token-by-token decoding, bound by memory traffic more than FLOPs."""

    def seconds(self, flops: float, kind: str = "forward") -> float:
        utilisation = {"forward": self.mfu, "training": self.train_mfu,
                       "generation": self.generation_mfu}[kind]
        return flops / (self.devices * self.peak * utilisation)


@dataclass(frozen=True)
class Cost:
    """FLOPs of a phase: teacher-forced or prefill passes, decoding, and LoRA training (each runs
    at its own utilisation)."""

    forward: float = 0.0
    generation: float = 0.0
    training: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.forward + other.forward, self.generation + other.generation,
                    self.training + other.training)

    def __mul__(self, times: float) -> Cost:
        return Cost(self.forward * times, self.generation * times, self.training * times)

    @property
    def flops(self) -> float:
        return self.forward + self.generation + self.training

    def seconds(self, hardware: Hardware) -> float:
        return (hardware.seconds(self.forward) + hardware.seconds(self.generation, "generation")
                + hardware.seconds(self.training, "training"))


def architecture(config: StarConfig, path: str | None) -> dict[str, Any]:
    """config.json fields: from `path`, the known table, or the model's folder or local cache
    (a plan never downloads)."""
    if path is not None:
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--architecture {path}: not a readable JSON file ({exc})") from None
    if config.model.name in KNOWN_ARCHITECTURES:
        return KNOWN_ARCHITECTURES[config.model.name]
    from transformers import AutoConfig

    from star.model.loading import resolve_model_path

    try:
        return AutoConfig.from_pretrained(resolve_model_path(config.model.name),
                                          local_files_only=True).to_dict()
    except OSError:
        raise ConfigError(f"no config.json for model '{config.model.name}' on this machine; "
                          "pass --architecture path/to/config.json") from None


def lengths(config: StarConfig, task: Task, tokenizer: Any) -> Lengths:
    """Mean token lengths over a seeded sample of the pool and the test set."""

    def sample(examples: list[Example]) -> list[Example]:
        picks = numpy_rng(config.seed, 0, "pool").permutation(len(examples))[:SAMPLE]
        return [examples[i] for i in sorted(picks)]

    pool = [encode(tokenizer, e.prompt, e.response, max_length=config.model.max_length,
                   add_eos=task.generative) for e in sample(task.train)]
    test = [encode(tokenizer, e.prompt, "", max_length=config.model.max_length, add_eos=False)
            for e in sample(task.test)] if task.test else []
    return Lengths(float(np.mean([len(e.prompt) for e in pool])),
                   float(np.mean([len(e.response) for e in pool])),
                   float(np.mean([len(e.prompt) for e in test])) if test else 0.0,
                   [len(tokenizer(c, add_special_tokens=False).input_ids) for c in task.choices]
                   if not task.generative else [])


def inference_cost(counts: ParameterCounts, task: Task, size: float, *, prompt: float,
                   lengths: Lengths, passes: int = 1, mc: bool = False) -> Cost:
    """One pass (or `passes` MC passes) over `size` prompts of mean length `prompt`: the label
    slots of a choice task, or for a generative task the prompt's prefill and greedy decoding
    of a response as long as the gold ones (capped at max_new_tokens) and, with MC (`mc`, or
    more than one pass), its teacher-forced passes."""
    if not task.generative:
        if all(n == 1 for n in lengths.label_tokens):  # one pass, one head position per label
            return Cost(passes * counts.forward(size * (prompt + 1), size))
        return Cost(passes * sum(counts.forward(size * (prompt + n), size * n)
                                 for n in lengths.label_tokens))
    response = min(lengths.response, task.max_new_tokens)
    generation = Cost(counts.forward(size * prompt, 0),
                      counts.forward(size * response, size * response))
    if passes == 1 and not mc:
        return generation
    return generation + Cost(passes * counts.forward(size * (prompt + response), size * response))


def training_cost(counts: ParameterCounts, lengths: Lengths, examples: float) -> Cost:
    """LoRA training on `examples` pool examples (epochs counted in), the loss on the response."""
    return Cost(training=counts.training(examples * (lengths.prompt + lengths.response),
                                         examples * lengths.response))


def scoring_cost(config: StarConfig, strategy: Strategy, task: Task, *, counts: ParameterCounts,
                 lengths: Lengths, unlabeled: int, count: int) -> Cost:
    """`strategy`'s passes over the `unlabeled` examples of a round that picks `count`: none for
    random and typiclust (typicality is numpy on the hidden states, priced once in `plan`);
    K MC passes, or with `selection.shortlist` c one MC pass over them and K over the c·count
    it ranks highest (when that is fewer than all); teacher-forced over the gold answers where
    the measure reads them on a generative task."""
    if strategy.measure is None:
        return Cost()
    mc = strategy.mc_dropout
    passes = config.uncertainty.mc_passes if mc else 1

    def over(size: float, times: int) -> Cost:
        if task.generative and reads_gold(strategy.measure, config.uncertainty.response):
            full = lengths.prompt + lengths.response
            return Cost(times * counts.forward(size * full, size * lengths.response))
        return inference_cost(counts, task, size, prompt=lengths.prompt, lengths=lengths,
                              passes=times, mc=mc)

    shortlist = config.selection.shortlist * count if mc else 0
    if 0 < shortlist < unlabeled:
        return over(unlabeled, 1) + over(shortlist, passes)
    return over(unlabeled, passes)


def guard_cost(config: StarConfig, task: Task, *, counts: ParameterCounts, lengths: Lengths,
               labels: int) -> Cost:
    """The prompt guard's check of a round with `labels` labels (`Experiment.guard`): k folds,
    each training the round's recipe on the labels outside it (n·(k−1) examples over all folds,
    whatever the fold sizes) and predicting those in it, and the base model predicting all n:
    2n predictions. Nothing above `guard.max_labels` or with the guard off; leave-one-out
    below k labels. Under `guard.reach: rarest_class` the labels are counted as random draws
    would hold the classes, in the training file's shares (`expected_counts`): a strategy that
    finds a rare class more often stops checking sooner, and random draws' own spread leaves
    the rarest class under its share in about half the runs, which check a round longer than
    planned. A round whose rare class has too few labels for any check costs its predictions
    alone; a plan counts the check."""
    guard = config.guard
    if not guard.folds or not within_reach(expected_counts(task, labels), labels,
                                           guard.max_labels, guard.reach):
        return Cost()
    folds = min(guard.folds, labels)
    if folds < 2:
        return Cost()
    return (training_cost(counts, lengths, labels * (folds - 1) * config.train.epochs)
            + inference_cost(counts, task, 2 * labels, prompt=lengths.prompt, lengths=lengths))


def expected_counts(task: Task, labels: int) -> dict[str, int] | None:
    """Each class's labels among `labels` drawn at random, in the shares of the task's training
    file (rounded down); None for a generative task, or where that file holds no labels."""
    if task.generative:
        return None
    golds = [e.gold for e in task.train]
    if None in golds:
        return None
    return {label: labels * count // len(golds)
            for label, count in class_counts(golds, task.labels).items()}


def plan(config: StarConfig, *, counts: ParameterCounts, lengths: Lengths,
         task: Task) -> list[dict[str, Any]]:
    """Per round: labels and the cost of scoring, training, the prompt guard and evaluation.

    Scoring holds every chooser's passes (the strategy's, or each of `auto`'s arms'), μ_b over
    the whole pool in round 1 for a dynamic strategy that mixes it in (cached after), the base
    model's hidden states over the whole pool once for typiclust (round 0 with a typiclust warm
    start, else round 1), the base model's answers on the labels before the round for the
    `evidence` schedule, `auto`'s reward (a prediction over every label it bought), and the
    batch's suggestions. Training holds, under `train.retries`, the check of the adapter's fit
    (its answers and the base model's on the labels); a draw trained again costs a training and
    a prediction more, which no plan can foresee. Evaluation has the zero-shot point in
    round 0."""
    loop, strategy = config.loop, get_strategy(config.strategy)
    arms = choosers(config, strategy)
    pool = min(loop.pool_size or len(task.train), len(task.train))
    if loop.budget > pool:  # as the loop refuses it: later rounds would score a negative pool
        raise ConfigError(f"loop.budget ({loop.budget}) is larger than the pool ({pool} examples)")
    test = min(loop.test_size or len(task.test), len(task.test))
    typical_round = (0 if loop.warm_start_strategy == "typiclust"
                     else 1 if any(s.typical for s in arms) else None)
    evidence = (config.uncertainty.schedule == "evidence" and config.uncertainty.mix == "weighted"
                and any(s.dynamic for s in arms))

    def predictions(size: float) -> Cost:
        return inference_cost(counts, task, size, prompt=lengths.prompt, lengths=lengths)

    rows = []
    for k in range(total_rounds(config) + 1):
        labeled = min(loop.warm_start + k * loop.step, loop.budget)
        taken = labeled - (min(loop.warm_start + (k - 1) * loop.step, loop.budget) if k else 0)
        before = labeled - taken
        score = Cost()
        if k > 0:
            for arm in arms:
                score += scoring_cost(config, arm, task, counts=counts, lengths=lengths,
                                      unlabeled=pool - before, count=taken)
                if arm.dynamic and not arm.typical and k == 1:  # μ_b, then from the cache
                    score += predictions(pool)
            if strategy.bandit:  # the reward: the round's model on every label the bandit bought
                score += predictions(labeled - loop.warm_start)
            if evidence:
                score += predictions(before)
        if k == typical_round:
            score += predictions(pool)
        score += predictions(taken)  # the suggestions
        evaluate = inference_cost(counts, task, test, prompt=lengths.test_prompt,
                                  lengths=lengths) * (2 if k == 0 else 1)
        train = training_cost(counts, lengths, labeled * config.train.epochs)
        if config.train.retries:  # the fit check: the base model and the adapter on the labels
            train += predictions(2 * labeled)
        rows.append({"round": k, "labels": labeled, "score": score, "train": train,
                     "guard": guard_cost(config, task, counts=counts, lengths=lengths,
                                         labels=labeled),
                     "evaluate": evaluate})
    return rows


def describe(rows: list[dict[str, Any]], hardware: Hardware) -> str:
    """The per-round table and the run's totals, in device-hours across the devices."""
    lines = ["| round | labels | scoring PFLOP (decoding) | training PFLOP | guard PFLOP | "
             "eval PFLOP | scoring | training | guard | eval | round |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    phase_seconds = dict.fromkeys(PHASES, 0.0)
    flops = 0.0
    for r in rows:
        times = [r[phase].seconds(hardware) for phase in PHASES]
        for phase, seconds in zip(PHASES, times, strict=True):
            phase_seconds[phase] += seconds
        flops += sum(r[phase].flops for phase in PHASES)
        lines.append(f"| {r['round']} | {r['labels']} | {r['score'].flops / 1e15:.3g} "
                     f"({r['score'].generation / 1e15:.3g}) | "
                     + " | ".join(f"{r[phase].flops / 1e15:.3g}" for phase in PHASES[1:]) + " | "
                     + " | ".join(_duration(t) for t in (*times, sum(times))) + " |")
    total = sum(phase_seconds.values())
    lines.append(f"\ntotal: {flops / 1e15:.3g} PFLOP, {_duration(total)} on {hardware.devices} "
                 f"device(s) (scoring {_duration(phase_seconds['score'])}, training "
                 f"{_duration(phase_seconds['train'])}, guard {_duration(phase_seconds['guard'])}, "
                 f"eval {_duration(phase_seconds['evaluate'])}), "
                 f"{hardware.devices * total / 3600:.3g} device-hours")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def run_plan(config: StarConfig, hardware: Hardware, arch_path: str | None = None) -> str:
    """`star plan`: load the task and a tokenizer, count, and describe."""
    from transformers import AutoTokenizer

    from star.model.loading import resolve_model_path

    task = load_task(config.task)
    arch = architecture(config, arch_path)
    counts = counts_of_architecture(arch, rank=config.lora.r, targets=config.lora.target_modules)
    warning = ""
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(config.model.name),
                                                  local_files_only=True)
        source = config.model.name
    except OSError:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m"))
        source = "smollm2-135m (the model's own tokenizer is not on this machine)"
        if not task.generative:
            warning = ("\n\nThe label words' token counts come from that stand-in tokenizer. "
                       "One that reads them as several tokens (LLaMA-2's SentencePiece may read "
                       "' true' alone as two) scores each label in a pass of its own: scoring "
                       f"costs up to {len(task.labels)}x the figures above.")
    measured = lengths(config, task, tokenizer)
    log(f"token lengths from {source}: prompt {measured.prompt:.1f}, response "
        f"{measured.response:.1f}, test prompt {measured.test_prompt:.1f}")
    rows = plan(config, counts=counts, lengths=measured, task=task)
    header = (f"{config.strategy} on {task.title}, {config.model.name}: base "
              f"{counts.base / 1e9:.3g} B, LoRA {counts.lora / 1e6:.3g} M parameters; "
              f"{hardware.devices} × {hardware.peak / 1e12:.4g} TFLOP/s at MFU "
              f"{hardware.mfu:.0%} (training {hardware.train_mfu:.0%}, decoding "
              f"{hardware.generation_mfu:.0%}); devices split the work evenly (data parallel)")
    return header + "\n\n" + describe(rows, hardware) + warning
