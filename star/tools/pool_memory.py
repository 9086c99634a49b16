"""`star bench --pool-sizes 10000,1000000`: peak memory of a whole run against the pool's size.

Each size runs in a fresh process (peak RSS is per process): a synthetic SST-2-like pool of
that many sentences (the word counts of SST-2's training sentences, drawn from a fixed word
list, so nothing is downloaded), and a two-round `me+dynamic` run over it: the warm start,
then μ_b over the whole pool, μ_f over the unlabeled pool, the selection and scores.jsonl.
The model is a 2-layer Llama with the default model's tokenizer and vocabulary, so token
counts are real and the forward passes are cheap enough for a million examples on a CPU;
what a larger model adds is per batch, not per pool example.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from star.active.runfolder import RunFolder, complete_rounds, new_results

WORDS = (
    "the", "a", "film", "movie", "story", "is", "was", "not", "but", "and", "too", "very",
    "good", "bad", "funny", "dull", "charming", "slow", "smart", "warm", "cold", "long", "short",
    "best", "worst", "great", "awful", "moving", "flat", "fresh", "tired", "love", "hate",
    "performances", "director", "script", "ending", "characters", "it", "this", "that", "with",
    "of", "to", "in", "for", "as", "an", "its", "their", "more", "less", "never", "always",
)
SST2_WORDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 20, 24, 30, 38)
"""Word counts spread like SST-2's training sentences (median 7, mean about 9)."""


def write_pool(folder: Path, size: int) -> None:
    """train.tsv (`size` unlabeled-looking but labeled sentences) and a 200-line test.tsv."""
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train.tsv", size), ("test.tsv", 200)):
        with (folder / name).open("w", encoding="utf-8") as handle:
            handle.write("id\tsentence\tlabel\n")
            for i in range(count):
                words = rng.choices(WORDS, k=rng.choice(SST2_WORDS))
                handle.write(f"{name[:2]}{i}\t{' '.join(words)}\t{rng.randint(0, 1)}\n")


def write_small_model(folder: Path) -> None:
    """A 2-layer Llama (hidden 64) with the default model's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from star.model.loading import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def settings(model: Path, data: Path) -> list[str]:
    return [f"model.name={model}", "model.dtype=float32", "model.max_length=128",
            "task.name=custom", f"task.data_dir={data}", "task.train_file=train.tsv",
            "task.test_file=test.tsv", "task.prompt='Review: {sentence}\\nSentiment:'",
            "task.answer_field=label", "task.labels=[0, 1]",
            "task.verbalizer={0: negative, 1: positive}", "lora.r=4", "train.epochs=1",
            "loop.warm_start=16", "loop.step=16", "loop.budget=32",
            "uncertainty.batch_size=64", "uncertainty.part_size=4096"]


CHILD = """
import atexit, json, resource, sys, threading, time
from pathlib import Path
peak_file, peaks = Path(sys.argv[1]), {}
status = Path("/proc/self/status")


def sample():
    while True:
        for line in status.read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile"):
                peaks[name] = max(peaks.get(name, 0), int(value.split()[0]))
        time.sleep(0.1)


if status.exists():
    threading.Thread(target=sample, daemon=True).start()
atexit.register(lambda: peak_file.write_text(json.dumps(
    {"VmHWM": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, **peaks})))
from star.tools.cli import main
sys.exit(main(sys.argv[2:]))
"""
"""The child: `star` itself, writing its own peaks (KiB) to a file as it exits: the resident
high-water mark, and on Linux, sampled every 0.1 s, the memory it owns (RssAnon) and the
pages of mapped files it holds (RssFile: the pool's table among them, which the system can
drop and read again)."""


def measure(size: int, work: Path) -> dict[str, Any]:
    """Peak memory and wall time of one run over a pool of `size`, in a child process."""
    data, model = work / f"pool-{size}", work / "model"
    write_pool(data, size)
    if not (model / "config.json").exists():
        write_small_model(model)
    peak_file, run, cache = work / f"peak-{size}.json", work / f"run-{size}", work / f"cache-{size}"
    for old in (run, cache):  # a finished run would only resume; a filled cache would skip μ_b
        shutil.rmtree(old, ignore_errors=True)
    args = ["run", "--strategy", "me+dynamic", "--out", str(run)]
    args += [part for item in settings(model, data) for part in ("--set", item)]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, str(peak_file), *args], check=True,
                   env={**os.environ, "STAR_CACHE_DIR": str(cache)})
    seconds = time.perf_counter() - start
    peaks = json.loads(peak_file.read_text())
    rounds = complete_rounds(RunFolder(run).read_results() or new_results())

    def megabytes(name: str) -> float | None:
        return round(peaks[name] / 1024, 1) if name in peaks else None

    return {"pool": size, "peak_rss_mb": megabytes("VmHWM"), "peak_anon_mb": megabytes("RssAnon"),
            "peak_file_mb": megabytes("RssFile"), "seconds": round(seconds, 1),
            "score_seconds": rounds[-1]["score_seconds"]}


def main(sizes: list[int], work: Path) -> list[dict[str, Any]]:
    """One fresh child process per size, smallest first (the children's peak only grows)."""
    rows = [measure(size, work) for size in sorted(sizes)]
    columns = (("pool", "pool"), ("peak RSS MB", "peak_rss_mb"), ("owned MB", "peak_anon_mb"),
               ("file pages MB", "peak_file_mb"), ("wall s", "seconds"),
               ("round-1 scoring s", "score_seconds"))
    print(" ".join(f"{title:>{len(title) + 2}}" for title, _ in columns))
    for row in rows:
        print(" ".join(f"{row[key]!s:>{len(title) + 2}}" for title, key in columns))
    return rows
