"""`star plan`: what a run will cost before it starts: FLOPs, time and GPU-hours per round.

The cost of every phase follows from the config (pool, test set, warm start, step, budget,
epochs, strategy, MC passes), the model's architecture (`star.model.flops`) and the mean token
lengths of the data; time is FLOPs / (devices × peak FLOP/s × utilisation). Inference and
training run at different utilisation (bench measures both), so each has its own MFU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from star.active.loop import total_rounds
from star.active.strategies import get_strategy
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
    """FLOPs of a phase: teacher-forced or prefill passes, and decoding."""

    forward: float = 0.0
    generation: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.forward + other.forward, self.generation + other.generation)

    def __mul__(self, times: float) -> Cost:
        return Cost(self.forward * times, self.generation * times)

    @property
    def flops(self) -> float:
        return self.forward + self.generation

    def seconds(self, hardware: Hardware) -> float:
        return hardware.seconds(self.forward) + hardware.seconds(self.generation, "generation")


def architecture(config: StarConfig, path: str | None) -> dict[str, Any]:
    """config.json fields: from `path`, the known table, or the model's folder or local cache
    (a plan never downloads)."""
    if path is not None:
        return json.loads(Path(path).read_text())
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
                   lengths: Lengths, passes: int = 1) -> Cost:
    """One pass (or `passes` MC passes) over `size` prompts of mean length `prompt`: the label
    slots of a choice task, or for a generative task the prompt's prefill and greedy decoding
    of a response as long as the gold ones (capped at max_new_tokens) and, with MC, its
    teacher-forced passes."""
    if not task.generative:
        if all(n == 1 for n in lengths.label_tokens):  # one pass, one head position per label
            return Cost(passes * counts.forward(size * (prompt + 1), size))
        return Cost(passes * sum(counts.forward(size * (prompt + n), size * n)
                                 for n in lengths.label_tokens))
    response = min(lengths.response, task.max_new_tokens)
    generation = Cost(counts.forward(size * prompt, 0),
                      counts.forward(size * response, size * response))
    if passes == 1:
        return generation
    return generation + Cost(passes * counts.forward(size * (prompt + response), size * response))


def plan(config: StarConfig, *, counts: ParameterCounts, lengths: Lengths,
         task: Task) -> list[dict[str, Any]]:
    """Per round: labels and the cost of scoring (with μ_b in round 1 and the batch's
    suggestions), training and evaluation (with the zero-shot point in round 0)."""
    loop, strategy = config.loop, get_strategy(config.strategy)
    pool = min(loop.pool_size or len(task.train), len(task.train))
    if loop.budget > pool:  # as the loop refuses it: later rounds would score a negative pool
        raise ConfigError(f"loop.budget ({loop.budget}) is larger than the pool ({pool} examples)")
    test = min(loop.test_size or len(task.test), len(task.test))
    passes = config.uncertainty.mc_passes if strategy.mc_dropout else 1
    gold = strategy.measure == "pe" or config.uncertainty.response == "gold"
    common = {"prompt": lengths.prompt, "lengths": lengths}
    rows = []
    for k in range(total_rounds(config) + 1):
        labeled = min(loop.warm_start + k * loop.step, loop.budget)
        taken = labeled - (min(loop.warm_start + (k - 1) * loop.step, loop.budget) if k else 0)
        unlabeled = pool - (labeled - taken)
        score = Cost()
        if k > 0 and strategy.measure is not None:
            if gold and task.generative:  # teacher-forced over the gold answers
                full = lengths.prompt + lengths.response
                score = Cost(passes * counts.forward(unlabeled * full,
                                                     unlabeled * lengths.response))
            else:
                score = inference_cost(counts, task, unlabeled, passes=passes, **common)
            if strategy.dynamic and k == 1:  # μ_b over the whole pool, once (cached after)
                score = score + inference_cost(counts, task, pool, **common)
        score = score + inference_cost(counts, task, taken, **common)  # the suggestions
        examples = labeled * config.train.epochs
        train = counts.training(examples * (lengths.prompt + lengths.response),
                                examples * lengths.response)
        evaluate = inference_cost(counts, task, test, prompt=lengths.test_prompt,
                                  lengths=lengths) * (2 if k == 0 else 1)
        rows.append({"round": k, "labels": labeled, "score": score, "train": train,
                     "evaluate": evaluate})
    return rows


def describe(rows: list[dict[str, Any]], hardware: Hardware) -> str:
    """The per-round table and the run's totals, in device-hours across the devices."""
    lines = ["| round | labels | scoring PFLOP (decoding) | training PFLOP | eval PFLOP | "
             "scoring | training | eval | round |", "|---|---|---|---|---|---|---|---|---|"]
    total = flops = 0.0
    for r in rows:
        times = (r["score"].seconds(hardware), hardware.seconds(r["train"], "training"),
                 r["evaluate"].seconds(hardware))
        total += sum(times)
        flops += r["score"].flops + r["train"] + r["evaluate"].flops
        lines.append(f"| {r['round']} | {r['labels']} | {r['score'].flops / 1e15:.3g} "
                     f"({r['score'].generation / 1e15:.3g}) | {r['train'] / 1e15:.3g} | "
                     f"{r['evaluate'].flops / 1e15:.3g} | "
                     + " | ".join(_duration(t) for t in (*times, sum(times))) + " |")
    lines.append(f"\ntotal: {flops / 1e15:.3g} PFLOP, {_duration(total)} on {hardware.devices} "
                 f"device(s), {hardware.devices * total / 3600:.3g} device-hours")
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
