"""`star bench`: speed of every phase of a round, measured side by side in one process.

Figures are stated against the machine's own matmul peak (a timed square matmul), so they
read as fractions of what the hardware can do. Model FLOPs per token count
2 × (non-embedding parameters, LoRA included) for a forward pass, plus 2 × vocab × hidden
for every position where the LM head runs; training counts the forward, the input-gradient
pass (frozen base: no weight gradients) and LoRA's weight gradients. Attention-score FLOPs
are left out (small at these lengths), so the utilisation figures are slight underestimates.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from star.batching import encode
from star.config import StarConfig, load_config
from star.inference import adapter_off, uncertainty
from star.loop import subsample
from star.models import LoadedModel, load_model
from star.tasks import Example, Task, load_task
from star.training import adapter_state, attach_lora, load_adapter_state, train_adapter
from star.uncertainty import ENTROPY_CLIP

SST2_PROMPT = "Review: {sentence}\nSentiment (positive or negative):"
SST2_SETTINGS = [
    "task.name=custom", "task.train_file=train.tsv", "task.test_file=test.tsv",
    f"task.prompt={json.dumps(SST2_PROMPT)}",
    "task.answer_field=label", "task.labels=[0, 1]",
    "task.verbalizer={0: negative, 1: positive}",
]


def matmul_gflops(dtype: torch.dtype, size: int = 2048, seconds: float = 2.0) -> float:
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Non-embedding base parameters, LoRA parameters, and vocab × hidden of the LM head."""
    base = lora = 0
    for name, param in model.named_parameters():
        if "lora_" in name:
            lora += param.numel()
        elif "embed_tokens" not in name and "lm_head" not in name:
            base += param.numel()
    head = model.get_output_embeddings().weight
    return {"base": base, "lora": lora, "head": head.shape[0] * head.shape[1]}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the high-water mark of resident memory."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def tokens_of(loaded: LoadedModel, examples: list[Example], max_length: int) -> int:
    return sum(len(encode(loaded.tokenizer, e.prompt, "", max_length, False).prompt) + 1
               for e in examples)


@torch.no_grad()
def reference_me(loaded: LoadedModel, examples: list[Example], max_length: int) -> np.ndarray:
    """ME the way the paper's code computes it: one example at a time, fp32 (no autocast), full
    logits at every position, a Python loop over the (teacher-forced gold) answer tokens."""
    values = []
    loaded.model.eval()
    for example in examples:
        enc = encode(loaded.tokenizer, example.prompt, example.response, max_length, False)
        logits = loaded.model(input_ids=torch.tensor([enc.ids], device=loaded.device)).logits[0]
        total = 0.0
        for j in range(len(enc.response)):
            probs = torch.softmax(logits[len(enc.prompt) - 1 + j].float(), dim=-1)
            total += float(-(probs * torch.log(probs.clamp_min(ENTROPY_CLIP))).sum())
        values.append(total)
    return np.array(values)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def run_bench(config: StarConfig, quick: bool) -> dict[str, Any]:
    sizes = {"score": 200 if quick else 1000, "reference": 30 if quick else 100,
             "train": 64 if quick else 256, "memory": (100, 1000) if quick else (1000, 10000),
             "overlap": 200 if quick else 1000, "profile": 48 if quick else 96}
    figures: dict[str, Any] = {"quick": quick, "sizes": sizes, "machine": {
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__}}
    figures["matmul_gflops"] = {"fp32": matmul_gflops(torch.float32),
                                "bf16": matmul_gflops(torch.bfloat16)}
    peak = figures["matmul_gflops"]["bf16"] * 1e9
    task: Task = load_task(config.task)
    loaded = load_model(config.model)
    attach_lora(loaded, config.lora, config.seed)
    counts = parameter_counts(loaded.model)
    figures["parameters"] = counts
    settings = config.uncertainty
    max_length = config.model.max_length
    pool = subsample(task.train, sizes["score"], config.seed)
    train = subsample(task.train, sizes["train"], config.seed + 1)
    # A briefly trained adapter, so MC passes and LoRA scores are not those of B = 0.
    train_adapter(loaded, task, train[:32], config.train.model_copy(update={"epochs": 1}), 0.0,
                  config.seed, max_length)
    tokens = tokens_of(loaded, pool, max_length)
    per_token = 2 * (counts["base"] + counts["lora"])
    head = 2 * counts["head"]  # one LM-head position per example for one-token answers
    scoring = {}
    for name, measure, passes, mc, base in (("me", "me", 1, False, False),
                                           ("me-star", "me", settings.mc_passes, True, True),
                                           ("pe", "pe", 1, False, False)):
        def score(measure=measure, passes=passes, mc=mc, base=base) -> None:
            if base:
                with adapter_off(loaded.model):
                    uncertainty(loaded, task, pool, measure, "own", 1, False,
                                settings.batch_size, max_length)
            uncertainty(loaded, task, pool, measure, "own", passes, mc, settings.batch_size,
                        max_length)

        _, seconds = timed(score)
        forward_tokens = tokens * (passes + (1 if base else 0))
        flops = forward_tokens * per_token + len(pool) * (passes + base) * head
        scoring[name] = {"examples_per_s": len(pool) / seconds,
                         "tokens_per_s": forward_tokens / seconds,
                         "mfu": flops / seconds / peak, "seconds": seconds}
    figures["scoring"] = scoring
    twin = fp32_twin(config, loaded)
    reference_pool = pool[: sizes["reference"]]
    _, seconds = timed(partial(reference_me, twin, reference_pool, max_length))
    figures["reference"] = {"examples_per_s": len(reference_pool) / seconds,
                            "tokens_per_s": tokens_of(twin, reference_pool, max_length) / seconds}
    figures["reference_speedup"] = (scoring["me"]["examples_per_s"]
                                    / figures["reference"]["examples_per_s"])
    figures["selection_overlap_bf16_fp32_early"], figures["spearman_bf16_fp32_early"] = \
        bf16_fp32_agreement(config, task, loaded, twin, sizes["overlap"])
    train_config = config.train.model_copy(update={"epochs": 1})
    stats = train_adapter(loaded, task, train, train_config, config.train.weight_decay_b,
                          config.seed, max_length)
    answer_tokens = sum(len(encode(loaded.tokenizer, e.prompt, e.response, max_length,
                                   task.generative).response) for e in train)
    train_flops = (stats.tokens * (4 * counts["base"] + 6 * counts["lora"])
                   + answer_tokens * 4 * counts["head"])
    figures["training"] = {"tokens_per_s": stats.tokens / stats.seconds,
                           "examples_per_s": len(train) / stats.seconds,
                           "mfu": train_flops / stats.seconds / peak,
                           "padding_fraction": stats.padding_fraction}
    load_adapter_state(twin.model, adapter_state(loaded.model))
    figures["selection_overlap_bf16_fp32"], figures["spearman_bf16_fp32"] = \
        bf16_fp32_agreement(config, task, loaded, twin, sizes["overlap"])
    del twin
    gc.collect()  # the fp32 twin's weights are gone before memory is measured
    figures["memory_mb"] = {}
    for label, size in zip(("pool_1k", "pool_10k"), sizes["memory"], strict=True):
        examples = subsample(task.train, size, config.seed + 2)
        reset_peak_rss()
        uncertainty(loaded, task, examples, "me", "own", 1, False, settings.batch_size,
                    max_length)
        figures["memory_mb"][label] = peak_rss_mb()
    sample, batch = pool[: sizes["profile"]], settings.batch_size
    figures["profile"] = {
        "scoring me": top_ops(lambda: uncertainty(loaded, task, sample, "me", "own", 1, False,
                                                  batch, max_length)),
        "scoring me-star": top_ops(lambda: uncertainty(loaded, task, sample, "me", "own",
                                                       settings.mc_passes, True, batch, max_length)),
        "training": top_ops(lambda: train_adapter(loaded, task, train[:48], train_config,
                                                  config.train.weight_decay_b, config.seed,
                                                  max_length))}
    return figures


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
    attach_lora(twin, config.lora, config.seed)
    load_adapter_state(twin.model, adapter_state(loaded.model))
    return twin


def bf16_fp32_agreement(config: StarConfig, task: Task, loaded: LoadedModel, twin: LoadedModel,
                        size: int) -> tuple[float, float]:
    """Top-`step` overlap and Spearman of ME scores computed in bf16 and in fp32."""
    pool = subsample(task.train, size, config.seed + 3)
    settings = config.uncertainty
    low, high = (uncertainty(model, task, pool, "me", "own", 1, False, settings.batch_size,
                             config.model.max_length)[0] for model in (loaded, twin))
    step = config.loop.step
    top_low = set(np.argsort(-low, kind="stable")[:step].tolist())
    top_high = set(np.argsort(-high, kind="stable")[:step].tolist())
    return len(top_low & top_high) / step, spearman(low, high)


def format_table(figures: dict[str, Any]) -> str:
    peak = figures["matmul_gflops"]
    lines = [f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s "
             f"({figures['machine']['threads']} threads)",
             "", "| phase | examples/s | tokens/s | MFU (of bf16 peak) |", "|---|---|---|---|"]
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
    from star.loop import Experiment

    config = config.model_copy(deep=True)
    config.strategy = "me-star"
    config.loop.budget = config.loop.warm_start + config.loop.step
    if quick:
        config.loop.pool_size = min(config.loop.pool_size or 150, 150)
        config.loop.test_size = min(config.loop.test_size or 100, 100)
    experiment = Experiment(config, out)
    experiment.run_round(0)
    experiment.run_round(1)
    last = experiment.results["rounds"][-1]
    return {"score_select": last["score_seconds"], "train": last["train_seconds"],
            "evaluate": last["eval_seconds"]}


def main(config_path: str | None, overrides: list[str], quick: bool, json_path: str | None,
         data_dir: str | None) -> dict[str, Any]:
    settings = list(overrides)
    if config_path is None:
        folder = data_dir or os.environ.get("STAR_SST2_DIR", "../shared/data/SST-2")
        settings = [*SST2_SETTINGS, f"task.data_dir={folder}", "loop.warm_start=16",
                    "loop.step=16", "loop.budget=80", "loop.pool_size=300", "loop.test_size=200",
                    "train.epochs=3", "train.batch_size=8", "train.lr=5e-4", *settings]
    config = load_config(config_path, settings)
    figures = run_bench(config, quick)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        figures["round"] = bench_round(config, Path(tmp) / "round", quick)
    table = format_table(figures)
    print(table)
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=1))
    return figures
