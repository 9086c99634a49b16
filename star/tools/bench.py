"""`star bench`: speed of every phase of a round, measured side by side in one process.

Figures are stated against the machine's own matmul peak (a timed square matmul), so they
read as fractions of what the hardware can do. Model FLOPs are counted as in
`star.model.flops` (attention scores left out, so utilisation is slightly underestimated).
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from star.active.loop import Experiment, subsample
from star.active.runfolder import complete_rounds
from star.active.scorer import Scoring, score_examples
from star.active.strategies import get_strategy
from star.config import StarConfig, load_config
from star.data.batching import encode
from star.data.sources import load_task
from star.data.tasks import Example, Task
from star.errors import ConfigError
from star.files import write_json
from star.model.flops import counts_of_model
from star.model.loading import LoadedModel, cpu_has_fast_bf16, load_model
from star.model.lora import adapter_off, adapter_state, attach_lora, load_adapter_state
from star.model.passes import ENTROPY_CLIP, generate
from star.model.training import train_adapter
from star.seeding import derived_seed, numpy_rng, torch_generator

SST2_SETTINGS = ["task.name=sst2", "task.train_file=train.tsv", "task.test_file=test.tsv"]
"""The built-in SST-2 task on the GLUE TSV files (the default setting is sized like the
cpu-sst2 preset; pass a config file to measure another)."""

GENERATIVE_PROMPTS = {True: 8, False: 32}
"""Prompts of the generative row, quick and full: the one-at-a-time path decodes them one by
one, up to max_new_tokens steps each."""
GENERATIVE_QUICK_TOKENS = 64
"""max_new_tokens of the generative row in quick mode (the task's own otherwise)."""


def matmul_gflops(dtype: torch.dtype, device: torch.device, size: int = 2048,
                  seconds: float = 2.0) -> float:
    """The device's matmul rate, the peak the MFU figures divide by. A GPU runs its kernels
    asynchronously, so the clock is read only after it has finished them."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        if count % 16 == 0:
            synchronize()  # the queue must not run ahead of the clock
    synchronize()
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the high-water mark of resident memory."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def plain(config: StarConfig, measure: str, passes: int = 1) -> Scoring:
    """The config's scoring settings for `measure` on the model's own answers."""
    return Scoring(measure, "own", passes, config.uncertainty.batch_size, max_length=config.model.max_length)


def mc_masks(config: StarConfig, loaded: LoadedModel) -> torch.Generator:
    return torch_generator(config.seed, 1, "mc_dropout", loaded.device)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def tokens_of(loaded: LoadedModel, examples: list[Example], max_length: int) -> int:
    return sum(len(encode(loaded.tokenizer, e.prompt, "", max_length=max_length,
                          add_eos=False).prompt) + 1
               for e in examples)


@torch.no_grad()
def reference_me(loaded: LoadedModel, examples: list[Example], max_length: int) -> np.ndarray:
    """ME the way the paper's code computes it: one example at a time, fp32 (no autocast), full
    logits at every position, a Python loop over the (teacher-forced gold) answer tokens."""
    values = []
    loaded.model.eval()
    for example in examples:
        enc = encode(loaded.tokenizer, example.prompt, example.response, max_length=max_length,
                     add_eos=False)
        logits = loaded.model(input_ids=torch.tensor([enc.ids], device=loaded.device)).logits[0]
        total = 0.0
        for j in range(len(enc.response)):
            probs = torch.softmax(logits[len(enc.prompt) - 1 + j].float(), dim=-1)
            total += float(-(probs * torch.log(probs.clamp_min(ENTROPY_CLIP))).sum())
        values.append(total)
    return np.array(values)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation with tied scores sharing their mean rank (bf16 scores tie)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def run_bench(config: StarConfig, quick: bool, *,
              generative: tuple[StarConfig, Task] | None = None) -> dict[str, Any]:
    """Every figure of the table. `generative` (a generative task and its config) adds
    the generative ME row, measured on this bench's model."""
    sizes = {"score": 200 if quick else 1000, "reference": 30 if quick else 100,
             "train": 64 if quick else 256, "memory": (100, 1000) if quick else (1000, 10000),
             "overlap": 200 if quick else 1000, "profile": 48 if quick else 96}
    figures: dict[str, Any] = {"quick": quick, "sizes": sizes, "machine": {
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__}}
    task: Task = load_task(config.task)
    loaded = load_model(config.model)
    # bf16 is timed only where the hardware is fast at it: elsewhere one 2048² bf16 matmul
    # takes most of a minute (0.3 GFLOP/s measured on a CPU without AVX-512).
    fast_bf16 = loaded.device.type == "cuda" or cpu_has_fast_bf16()
    device = loaded.device
    figures["matmul_gflops"] = {"fp32": matmul_gflops(torch.float32, device),
                                "bf16": matmul_gflops(torch.bfloat16, device) if fast_bf16 else None}
    figures["peak_dtype"] = "bf16" if loaded.compute_dtype == torch.bfloat16 else "fp32"
    peak = figures["matmul_gflops"][figures["peak_dtype"]] * 1e9
    attach_lora(loaded, config.lora, derived_seed(config.seed, 0, "lora_init"))
    counts = counts_of_model(loaded.model)
    figures["parameters"] = asdict(counts)
    settings = config.uncertainty
    max_length = config.model.max_length
    pool = subsample(task.train, sizes["score"], numpy_rng(config.seed, 0, "pool"))
    train = subsample(task.train, sizes["train"], numpy_rng(config.seed, 1, "pool"))
    train_config = config.train.model_copy(update={"epochs": 1})
    # A briefly trained adapter, so MC passes and LoRA scores are not those of B = 0.
    train_adapter(loaded, task, train[:32], config=train_config, weight_decay_b=0.0,
                  seed=config.seed, round_index=0, max_length=max_length)
    tokens = tokens_of(loaded, pool, max_length)
    scoring = {}
    for name in ("me", "me-star", "pe"):
        strategy = get_strategy(name)
        passes = settings.mc_passes if strategy.mc_dropout else 1

        def score(strategy=strategy, passes=passes) -> None:
            if strategy.dynamic:
                with adapter_off(loaded.model):
                    score_examples(loaded, task, pool, plain(config, strategy.measure))
            score_examples(loaded, task, pool, plain(config, strategy.measure, passes),
                           masks=mc_masks(config, loaded) if strategy.mc_dropout else None)

        _, seconds = timed(score)
        forward_tokens = tokens * (passes + strategy.dynamic)
        # one LM-head position per example and pass for one-token answers
        flops = counts.forward(forward_tokens, len(pool) * (passes + strategy.dynamic))
        scoring[name] = {"examples_per_s": len(pool) / seconds,
                         "tokens_per_s": forward_tokens / seconds,
                         "mfu": flops / seconds / peak, "seconds": seconds}
    figures["scoring"] = scoring
    if generative is not None:
        figures["generative"] = bench_generation(loaded, *generative, quick=quick)
    twin = fp32_twin(config, loaded)
    reference_pool = pool[: sizes["reference"]]
    _, seconds = timed(partial(reference_me, twin, reference_pool, max_length))
    figures["reference"] = {"examples_per_s": len(reference_pool) / seconds,
                            "tokens_per_s": tokens_of(twin, reference_pool, max_length) / seconds}
    figures["reference_speedup"] = (scoring["me"]["examples_per_s"]
                                    / figures["reference"]["examples_per_s"])
    figures["selection_overlap_bf16_fp32_early"], figures["spearman_bf16_fp32_early"] = \
        bf16_fp32_agreement(config, task, loaded, twin, size=sizes["overlap"])
    stats = train_adapter(loaded, task, train, config=train_config,
                          weight_decay_b=config.train.weight_decay_b, seed=config.seed,
                          round_index=1, max_length=max_length)
    answer_tokens = sum(len(encode(loaded.tokenizer, e.prompt, e.response, max_length=max_length,
                                   add_eos=task.generative).response) for e in train)
    train_flops = counts.training(stats.tokens, answer_tokens)
    figures["training"] = {"tokens_per_s": stats.tokens / stats.seconds,
                           "examples_per_s": len(train) / stats.seconds,
                           "mfu": train_flops / stats.seconds / peak,
                           "padding_fraction": stats.padding_fraction}
    load_adapter_state(twin.model, adapter_state(loaded.model))
    figures["selection_overlap_bf16_fp32"], figures["spearman_bf16_fp32"] = \
        bf16_fp32_agreement(config, task, loaded, twin, size=sizes["overlap"])
    del twin
    gc.collect()  # the fp32 twin's weights are gone before memory is measured
    figures["memory_mb"] = {}
    for label, size in zip(("pool_1k", "pool_10k"), sizes["memory"], strict=True):
        examples = subsample(task.train, size, numpy_rng(config.seed, 2, "pool"))
        reset_peak_rss()
        score_examples(loaded, task, examples, plain(config, "me"))
        figures["memory_mb"][label] = peak_rss_mb()
    sample = pool[: sizes["profile"]]
    figures["profile"] = {
        "scoring me": top_ops(lambda: score_examples(loaded, task, sample, plain(config, "me"))),
        "scoring me-star": top_ops(lambda: score_examples(
            loaded, task, sample, plain(config, "me", settings.mc_passes),
            masks=mc_masks(config, loaded))),
        "training": top_ops(lambda: train_adapter(
            loaded, task, train[:48], config=train_config,
            weight_decay_b=config.train.weight_decay_b, seed=config.seed, round_index=1,
            max_length=max_length))}
    return figures


def bench_generation(loaded: LoadedModel, config: StarConfig, task: Task, *,
                     quick: bool) -> dict[str, Any]:
    """Label-free ME on a generative task's pool prompts (GSM8K-length for gsm8k): the batched
    greedy loop against one example at a time through the same code, in generated tokens/s.

    Label-free ME is the entropy greedy decoding computes on the way, so `generate` is all
    `score_examples` runs for it (measure "me" on the model's own answer); timing it directly
    also says how many tokens each path produced. The task, its max_new_tokens (capped in
    quick mode), model.max_length and uncertainty.batch_size come from `config`.
    """
    if quick:
        task = replace(task, max_new_tokens=min(task.max_new_tokens, GENERATIVE_QUICK_TOKENS))
    prompts = subsample(task.train, GENERATIVE_PROMPTS[quick], numpy_rng(config.seed, 4, "pool"))
    max_length = config.model.max_length
    lengths = [len(encode(loaded.tokenizer, e.prompt, "", max_length=max_length
                          - task.max_new_tokens, add_eos=False).prompt) for e in prompts]
    figures: dict[str, Any] = {"task": task.title or task.name, "prompts": len(prompts),
                               "prompt_tokens_mean": float(np.mean(lengths)),
                               "max_new_tokens": task.max_new_tokens}
    responses = {}
    for path, batch_size in (("batched", config.uncertainty.batch_size), ("one_at_a_time", 1)):
        generation, seconds = timed(partial(generate, loaded, task, prompts, batch_size=batch_size,
                                            max_length=max_length, desc=f"generating ({path})"))
        responses[path] = generation.tokens
        count = sum(len(tokens) for tokens in generation.tokens)
        figures[path] = {"batch_size": batch_size, "generated_tokens": count, "seconds": seconds,
                         "tokens_per_s": count / seconds}
    figures["speedup"] = (figures["batched"]["tokens_per_s"]
                          / figures["one_at_a_time"]["tokens_per_s"])
    figures["same_responses"] = float(np.mean([a == b for a, b in zip(
        responses["batched"], responses["one_at_a_time"], strict=True)]))
    return figures


def generative_lines(figures: dict[str, Any]) -> list[str]:
    """The generative ME section of the table, or why it is missing."""
    gen = figures.get("generative")
    if gen is None:
        return ["generative ME (label-free): not measured (--generative-config names a "
                "generative task, e.g. configs/paper-gsm8k.yaml)"]
    lines = [f"generative ME (label-free): {gen['prompts']} {gen['task']} prompts of "
             f"{gen['prompt_tokens_mean']:.0f} tokens on average, greedy, up to "
             f"{gen['max_new_tokens']} new tokens", "",
             "| path | batch size | generated tokens | generated tokens/s |", "|---|---|---|---|"]
    for path, name in (("batched", "batched loop"), ("one_at_a_time", "one at a time")):
        row = gen[path]
        lines.append(f"| {name} | {row['batch_size']} | {row['generated_tokens']} | "
                     f"{row['tokens_per_s']:.1f} |")
    lines.append(f"speed-up of batched generation over one at a time: {gen['speedup']:.1f}x "
                 f"(the same response for {100 * gen['same_responses']:.0f} % of prompts)")
    return lines


def top_ops(fn: Callable[[], Any], count: int = 8) -> dict[str, float]:
    """Where the time goes: each operator's share of the CPU time (self time), largest first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return {e.key: e.self_cpu_time_total / total for e in events[:count]}


def fp32_twin(config: StarConfig, loaded: LoadedModel) -> LoadedModel:
    """The same model and adapter with fp32 weights and fp32 matmuls."""
    twin = load_model(config.model.model_copy(update={"dtype": "float32"}))
    attach_lora(twin, config.lora, derived_seed(config.seed, 0, "lora_init"))
    load_adapter_state(twin.model, adapter_state(loaded.model))
    return twin


def bf16_fp32_agreement(config: StarConfig, task: Task, loaded: LoadedModel, twin: LoadedModel,
                        size: int) -> tuple[float, float]:
    """Top-`step` overlap and Spearman of ME scores computed in bf16 and in fp32."""
    pool = subsample(task.train, size, numpy_rng(config.seed, 3, "pool"))
    low, high = (score_examples(model, task, pool, plain(config, "me"))[0]
                 for model in (loaded, twin))
    step = config.loop.step
    top_low = set(np.argsort(-low, kind="stable")[:step].tolist())
    top_high = set(np.argsort(-high, kind="stable")[:step].tolist())
    return len(top_low & top_high) / step, spearman(low, high)


def format_table(figures: dict[str, Any]) -> str:
    peak = figures["matmul_gflops"]
    bf16 = f"{peak['bf16']:.0f} GFLOP/s" if peak["bf16"] is not None else "not timed (no fast bf16)"
    lines = [f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {bf16} "
             f"({figures['machine']['threads']} threads)", "",
             f"| phase | examples/s | tokens/s | MFU (of {figures['peak_dtype']} peak) |",
             "|---|---|---|---|"]
    for name, row in figures["scoring"].items():
        lines.append(f"| scoring {name} | {row['examples_per_s']:.1f} | "
                     f"{row['tokens_per_s']:.0f} | {100 * row['mfu']:.1f} % |")
    ref = figures["reference"]
    lines.append(f"| paper-style ME (1 at a time, fp32, full logits) | {ref['examples_per_s']:.1f} "
                 f"| {ref['tokens_per_s']:.0f} | – |")
    train = figures["training"]
    lines.append(f"| LoRA training | {train['examples_per_s']:.1f} | {train['tokens_per_s']:.0f} "
                 f"| {100 * train['mfu']:.1f} % |")
    lines += ["", f"speed-up of batched ME over the paper-style path: "
                  f"{figures['reference_speedup']:.1f}x",
              f"training padding fraction: {100 * train['padding_fraction']:.1f} %",
              f"top-step selection overlap bf16 vs fp32: "
              f"{100 * figures['selection_overlap_bf16_fp32']:.1f} % "
              f"(Spearman {figures['spearman_bf16_fp32']:.4f}); after one epoch on 32 labels "
              f"{100 * figures['selection_overlap_bf16_fp32_early']:.1f} % "
              f"(Spearman {figures['spearman_bf16_fp32_early']:.4f})",
              f"peak RSS scoring (me): {figures['sizes']['memory'][0]} examples "
              f"{figures['memory_mb']['pool_1k']:.0f} MB, {figures['sizes']['memory'][1]} "
              f"examples {figures['memory_mb']['pool_10k']:.0f} MB"]
    lines += ["", *generative_lines(figures), ""]
    lines.append("where the time goes (share of CPU time by operator):")
    for phase, ops in figures["profile"].items():
        lines.append(f"  {phase}: " + ", ".join(f"{name} {100 * share:.0f} %"
                                                for name, share in ops.items()))
    if "round" in figures:
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in figures["round"].items())
        lines.append(f"one cpu-preset round: {phases}")
    return "\n".join(lines)


def bench_round(config: StarConfig, out: Path, quick: bool) -> dict[str, float]:
    """One whole round of the preset (warm start + one acquisition round), by phase.

    `quick` runs it on at most 150 pool and 100 test examples.
    """
    config = config.model_copy(deep=True)
    config.strategy = "me-star"
    config.loop.budget = config.loop.warm_start + config.loop.step
    if quick:
        config.loop.pool_size = min(config.loop.pool_size or 150, 150)
        config.loop.test_size = min(config.loop.test_size or 100, 100)
    last = complete_rounds(Experiment(config, out).run())[-1]
    return {"score_select": last["score_seconds"], "train": last["train_seconds"],
            "evaluate": last["eval_seconds"]}


def main(config_path: str | None, overrides: list[str], *, quick: bool, json_path: str | None,
         data_dir: str | None, generative_config: str | None = None) -> dict[str, Any]:
    """`generative_config`: a config whose (generative) task the generative ME row measures;
    read before the bench starts, so a wrong one fails at once."""
    generative = None
    if generative_config is not None:
        generative_settings = load_config(generative_config)
        generative_task = load_task(generative_settings.task)
        if not generative_task.generative:
            raise ConfigError(f"--generative-config {generative_config}: task "
                              f"'{generative_task.name}' is not generative")
        generative = (generative_settings, generative_task)
    settings = list(overrides)
    if config_path is None:
        folder = data_dir or os.environ.get("STAR_SST2_DIR", "../shared/data/SST-2")
        settings = [*SST2_SETTINGS, f"task.data_dir={folder}", "loop.warm_start=16",
                    "loop.step=16", "loop.budget=80", "loop.pool_size=300", "loop.test_size=200",
                    "train.epochs=3", "train.batch_size=8", "train.lr=5e-4", *settings]
    config = load_config(config_path, settings)
    figures = run_bench(config, quick, generative=generative)
    with tempfile.TemporaryDirectory() as tmp:
        figures["round"] = bench_round(config, Path(tmp) / "round", quick)
    table = format_table(figures)
    print(table)
    if json_path:
        write_json(Path(json_path), figures)
    return figures
