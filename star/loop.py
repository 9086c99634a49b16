"""The active-learning loop, read top to bottom: setup, rounds, finish.

Round 0 labels a random warm start. Every later round scores the unlabeled pool with the
last adapter (and, for dynamic strategies, the cached base-model scores), labels the top
`loop.step` from the gold answers (the simulated annotator), trains a new adapter on all
labels so far and evaluates it. Each finished round is written to the run folder at once,
so a stopped run resumes from its last completed round with the same command.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from safetensors.torch import load_file

from star.cache import BaseScoreCache, cache_key
from star.config import StarConfig, flatten, save_config
from star.errors import ConfigError, DataError
from star.files import write_json, write_jsonl
from star.inference import adapter_off, predict, uncertainty
from star.metrics import auc
from star.models import LoadedModel, cache_root, load_model
from star.progress import log
from star.strategies import Scores, Strategy, acquisition_scores, get_strategy, select_top
from star.tasks import Example, Task, load_task, task_display_name
from star.training import TrainStats, adapter_state, attach_lora, load_adapter_state, train_adapter


def subsample(examples: list[Example], size: int | None, seed: int) -> list[Example]:
    if size is None or size >= len(examples):
        return examples
    keep = np.sort(np.random.default_rng(seed).permutation(len(examples))[:size])
    return [examples[i] for i in keep]


def task_title(config: StarConfig) -> str:
    """A built-in task's title; a custom task is named after its data folder."""
    if config.task.name == "custom" and config.task.data_dir:
        return Path(config.task.data_dir).name
    return task_display_name(config.task.name)


def check_sizes(config: StarConfig, pool: list[Example]) -> None:
    if config.loop.budget > len(pool):
        raise ConfigError(f"loop.budget ({config.loop.budget}) is larger than the pool "
                          f"({len(pool)} examples)")


def total_rounds(config: StarConfig) -> int:
    return math.ceil((config.loop.budget - config.loop.warm_start) / config.loop.step)


def prepare_out(out: Path, config: StarConfig) -> dict[str, Any] | None:
    """Create the run folder, or check that an existing one holds this same config."""
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.yaml"
    if saved.exists():
        before = flatten(yaml.safe_load(saved.read_text()))
        now = flatten(config.model_dump())
        changed = sorted(key for key in before.keys() | now.keys() if before.get(key) != now.get(key))
        if changed:
            raise ConfigError(f"run folder '{out}' holds a run with another config "
                              f"(differs in: {', '.join(changed)}); choose another --out")
    else:
        save_config(config, saved)
    results = out / "results.json"
    return json.loads(results.read_text()) if results.exists() else None


class Experiment:
    """One strategy, one seed: the state a run needs between rounds."""

    def __init__(self, config: StarConfig, out: Path) -> None:
        self.config = config
        self.out = out
        self.strategy: Strategy = get_strategy(config.strategy)
        self.task: Task = load_task(config.task)
        self.pool = subsample(self.task.train, config.loop.pool_size, config.seed)
        self.test = subsample(self.task.test, config.loop.test_size, config.seed)
        check_sizes(config, self.pool)
        previous = prepare_out(out, config)
        self.results: dict[str, Any] = previous or {
            "task": task_title(config), "strategy": config.strategy, "seed": config.seed,
            "model": config.model.name, "pool_size": len(self.pool), "test_size": len(self.test),
            "auc": None, "rounds": []}
        self.labeled: list[str] = [i for r in self.results["rounds"] for i in r["selected_ids"]]
        self.loaded = load_model(config.model)
        attach_lora(self.loaded, config.lora, config.seed)
        self.initial_adapter = adapter_state(self.loaded.model)
        if self.results["rounds"]:
            last = len(self.results["rounds"]) - 1
            self._load_adapter(out / "rounds" / str(last) / "adapter")
            log(f"resuming {out} after round {last} ({len(self.labeled)} labels)")

    # -- the recipe ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        loop = self.config.loop
        while not self.results["rounds"] or len(self.labeled) < loop.budget:
            self.run_round(len(self.results["rounds"]))
        return self.results

    def run_round(self, k: int) -> None:
        loop = self.config.loop
        round_dir = self.out / "rounds" / str(k)
        round_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if k == 0:
            rng = np.random.default_rng([self.config.seed, 0])
            chosen = rng.permutation(len(self.pool))[: loop.warm_start]
            selected = [self.pool[i].id for i in sorted(chosen)]
        else:
            selected = self.select(k, min(loop.step, loop.budget - len(self.labeled)), round_dir)
        score_seconds = time.perf_counter() - start
        self.labeled += selected
        train = self.train(k)
        self.loaded.model.save_pretrained(round_dir / "adapter")
        start = time.perf_counter()
        predictions = predict(self.loaded, self.task, self.test, self.config.uncertainty.batch_size,
                              self.config.model.max_length)
        eval_seconds = time.perf_counter() - start
        write_jsonl(round_dir / "predictions.jsonl", [asdict(p) for p in predictions])
        accuracy = float(np.mean([p.correct for p in predictions]))
        self.results["rounds"].append({
            "round": k, "n_labeled": len(self.labeled), "accuracy": accuracy,
            "selected_ids": selected, "train_seconds": round(train.seconds, 3),
            "score_seconds": round(score_seconds, 3), "eval_seconds": round(eval_seconds, 3),
            "train_loss": train.final_loss, "train_padding_fraction": train.padding_fraction})
        curve = self.results["rounds"]
        self.results["auc"] = auc([r["n_labeled"] for r in curve], [r["accuracy"] for r in curve])
        write_json(self.out / "results.json", self.results)
        log(f"[{self.config.strategy} seed {self.config.seed}] round {k}: "
            f"{len(self.labeled)} labels, accuracy {accuracy:.4f} "
            f"(score {score_seconds:.0f}s, train {train.seconds:.0f}s, eval {eval_seconds:.0f}s)")

    # -- the steps ----------------------------------------------------------------------------
    def select(self, k: int, count: int, round_dir: Path) -> list[str]:
        """Score the unlabeled pool, write scores.jsonl, return the ids to label."""
        taken = set(self.labeled)
        unlabeled = [e for e in self.pool if e.id not in taken]
        scores = self.score(unlabeled, k)
        picked = set(select_top(scores.score, count).tolist())
        rows = []
        for i, example in enumerate(unlabeled):
            row: dict[str, Any] = {"id": example.id}
            if scores.base is not None:
                row["base"] = float(scores.base[i])
            if scores.passes is not None:
                row["passes"] = [float(v) for v in scores.passes[:, i]]
                row["full"] = float(scores.full[i])
            row["score"] = float(scores.score[i])
            row["selected"] = i in picked
            rows.append(row)
        write_jsonl(round_dir / "scores.jsonl", rows)
        if scores.weight is not None:
            self.results.setdefault("lambda", {})[str(k)] = scores.weight
        return [unlabeled[i].id for i in sorted(picked)]

    def score(self, unlabeled: list[Example], k: int) -> Scores:
        strategy, settings = self.strategy, self.config.uncertainty
        if strategy.measure is None:
            noise = np.random.default_rng([self.config.seed, k]).random(len(unlabeled))
            return Scores(noise)
        passes = settings.mc_passes if strategy.mc_dropout else 1
        full = uncertainty(self.loaded, self.task, unlabeled, strategy.measure, settings.response,
                           passes, strategy.mc_dropout, settings.batch_size,
                           self.config.model.max_length, desc=f"scoring round {k}")
        base = self.base_scores(unlabeled) if strategy.dynamic else None
        return acquisition_scores(strategy, full, base, k - 1, total_rounds(self.config), settings)

    def base_scores(self, examples: list[Example]) -> np.ndarray:
        return base_scores(self.loaded, self.task, self.config, self.strategy.measure, examples)

    def train(self, k: int) -> TrainStats:
        config = self.config
        if config.train.init == "fresh":
            load_adapter_state(self.loaded.model, self.initial_adapter)
        by_id = {e.id: e for e in self.pool}
        labeled = [by_id[i] for i in self.labeled]
        decay = config.train.weight_decay_b if self.strategy.l2_on_b else 0.0
        return train_adapter(self.loaded, self.task, labeled, config.train, decay,
                             seed=config.seed * 1000 + k, max_length=config.model.max_length)

    def _load_adapter(self, folder: Path) -> None:
        from peft import set_peft_model_state_dict

        weights = folder / "adapter_model.safetensors"
        if not weights.exists():
            raise DataError(f"cannot resume: '{weights}' is missing")
        set_peft_model_state_dict(self.loaded.model, load_file(weights))


def base_scores(loaded: LoadedModel, task: Task, config: StarConfig, measure: str,
                examples: list[Example]) -> np.ndarray:
    """μ_b from the on-disk cache, computing (adapter disabled) only the ids it lacks."""
    key = cache_key(model=config.model.name, dtype=str(loaded.compute_dtype),
                    max_length=config.model.max_length, task=config.task.model_dump(),
                    measure=measure, response=config.uncertainty.response)

    def compute(positions: list[int]) -> np.ndarray:
        with adapter_off(loaded.model):
            values = uncertainty(loaded, task, [examples[i] for i in positions], measure,
                                 config.uncertainty.response, 1, False,
                                 config.uncertainty.batch_size, config.model.max_length,
                                 desc="scoring base model")
        return values[0]

    cache = BaseScoreCache(cache_root() / "base_scores", key)
    return cache.get([e.id for e in examples], compute)


def run_experiment(config: StarConfig, out: Path) -> dict[str, Any]:
    """Run (or resume) one strategy and seed into `out`; returns the results."""
    return Experiment(config, out).run()
