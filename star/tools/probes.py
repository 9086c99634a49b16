"""The paper's probe experiments (Sec. 4) on any model and choice task.

- confidence (Sec. 4.2, Fig. 2): the base model prompted with n demonstrations against a
  LoRA-tuned model; CF = max probability over the labels; density of CF on wrong answers, and
  the difference of the two mean CFs with Welch's interval.
- entropy (Sec. 4.3, Fig. 3): from a run's scores.jsonl, the top-N examples by base-model
  uncertainty, the correlation of their uncertainty across iterations (with Fisher's
  intervals), and scatter plots.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from star.active.loop import subsample
from star.active.measures import base_measure
from star.active.runfolder import RunFolder, complete_rounds
from star.active.scorer import Scoring, base_score_cache, base_scores
from star.active.strategies import get_strategy, select_top
from star.config import StarConfig, load_config
from star.data.sources import load_task
from star.data.tasks import Example, Task
from star.errors import DataError
from star.files import write_json
from star.model.loading import LoadedModel, load_model
from star.model.lora import adapter_off, attach_lora, load_adapter
from star.model.passes import choice_outputs
from star.model.training import train_adapter
from star.progress import log
from star.results.figures import plot_class_counts, plot_confidence_density, plot_heatmap, plot_scatter
from star.results.metrics import correlation_matrix, expected_calibration_error
from star.results.significance import Estimate, correlation, unpaired
from star.seeding import derived_seed, numpy_rng


def label_confidence(loaded: LoadedModel, task: Task, examples: list[Example], raw: bool,
                     config: StarConfig) -> tuple[np.ndarray, np.ndarray]:
    """(predicted label index, CF) per example. CF renormalised over the labels, or raw."""
    out = choice_outputs(loaded, task, examples, batch_size=config.uncertainty.batch_size,
                         max_length=config.model.max_length, desc="probing")
    logprob = torch.from_numpy(out.label_logprob[0])  # [examples, labels]
    probs = logprob.exp() if raw else torch.softmax(logprob, dim=-1)
    return probs.argmax(dim=1).numpy(), probs.max(dim=1).values.numpy()


def few_shot(examples: list[Example], demos: list[Example]) -> list[Example]:
    """Prepend `demos` (prompt + gold response) to every prompt, as in-context demonstrations."""
    prefix = "".join(d.prompt + d.response + "\n\n" for d in demos)
    return [replace(e, prompt=prefix + e.prompt) for e in examples]


def labeled_sample(task: Task, count: int, rng: np.random.Generator, purpose: str) -> list[Example]:
    """`count` labeled pool examples in the order of a permutation drawn from `rng`; a pool
    labeled in part (or not at all, for people to label) offers only its labeled ones."""
    chosen: list[Example] = []
    for i in rng.permutation(len(task.train)):
        if len(chosen) == count:
            break
        if (example := task.train[int(i)]).response is not None:
            chosen.append(example)
    if len(chosen) < count:
        raise DataError(f"the probe's {purpose} needs {count} labeled pool examples; the pool of "
                        f"'{task.title}' has {len(chosen)}")
    return chosen


def _stats(task: Task, examples: list[Example], predicted: np.ndarray,
           confidence: np.ndarray) -> dict[str, Any]:
    correct = np.array([task.labels[p] == e.gold for p, e in zip(predicted, examples, strict=True)])
    answers = Counter(task.labels[p] for p in predicted)
    return {"accuracy": float(correct.mean()),
            "predicted_counts": {label: answers[label] for label in task.labels},
            "ece": expected_calibration_error(confidence, correct),
            "mean_confidence_wrong": float(confidence[~correct].mean()) if (~correct).any() else None,
            "wrong_confidence": confidence[~correct].tolist()}


def confidence_probe(config: StarConfig, out: Path, *, shots: int, run: Path | None,
                     round_index: int | None, train_size: int, raw: bool) -> dict[str, Any]:
    """Few-shot base model vs LoRA model on the test split; writes JSON and the density plot."""
    task = load_task(config.task)
    if task.generative:
        raise DataError(f"the confidence probe needs a choice task; '{config.task.name}' is "
                        f"'{task.answer_type}'")
    test = subsample(task.test, config.loop.test_size, numpy_rng(config.seed, 0, "test"))
    demos = labeled_sample(task, shots, numpy_rng(config.seed, 0, "probe_demos"), "demonstrations")
    loaded = load_model(config.model)
    attach_lora(loaded, config.lora, derived_seed(config.seed, 0, "lora_init"))
    if run is not None:
        results = RunFolder(run).read_results()
        if not results or not complete_rounds(results):
            raise DataError(f"'{run}' is not a run folder with a finished round")
        chosen = complete_rounds(results)[-1]["round"] if round_index is None else round_index
        folder = RunFolder(run).saved_adapter(chosen)
        load_adapter(loaded.model, folder)
        source = f"adapter of {folder}"
    else:
        labeled = labeled_sample(task, train_size, numpy_rng(config.seed, 0, "probe_train"),
                                 "training set")
        log(f"training a LoRA adapter on {len(labeled)} random labels")
        train_adapter(loaded, task, labeled, config=config.train, weight_decay_b=0.0,
                      seed=config.seed, round_index=0, max_length=config.model.max_length)
        source = f"LoRA trained on {len(labeled)} random labels"
    lora = _stats(task, test, *label_confidence(loaded, task, test, raw, config=config))
    with adapter_off(loaded.model):
        base = _stats(task, few_shot(test, demos), *label_confidence(
            loaded, task, few_shot(test, demos), raw, config=config))
    names = {"few-shot": f"base model, {shots}-shot", "lora": f"LoRA ({source})"}
    difference = _wrong_confidence_difference(lora, base)
    result = {"task": task.title, "model": config.model.name, "shots": shots,
              "confidence": "raw" if raw else "renormalised over labels",
              "test_size": len(test), "lora_source": source,
              "demonstrations": [d.id for d in demos], "few_shot": base, "lora": lora,
              "wrong_confidence_lora_minus_few_shot":
                  None if difference is None else difference.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "probe_confidence.json", result)
    plot_confidence_density({f"{shots}-shot base": base["wrong_confidence"],
                             "LoRA": lora["wrong_confidence"]},
                            f"{task.title}: confidence of wrong predictions",
                            out / "confidence_density.png",
                            (0.0, 1.0) if raw else (1 / len(task.labels), 1.0))
    gold = Counter(e.gold for e in test)
    plot_class_counts({"gold": {label: gold[label] for label in task.labels},
                       f"{shots}-shot base": base["predicted_counts"],
                       "LoRA": lora["predicted_counts"]}, task.labels,
                      f"{task.title}: answers per label", out / "predicted_classes.png")
    for key, name in names.items():
        stats = result["few_shot" if key == "few-shot" else "lora"]
        answered = [label for label, count in stats["predicted_counts"].items() if count]
        log(f"{name}: accuracy {100 * stats['accuracy']:.1f} %, ECE {100 * stats['ece']:.1f} %, "
            f"{len(stats['wrong_confidence'])} wrong, answers {stats['predicted_counts']}"
            + (f" (collapsed: '{answered[0]}' for every example)" if len(answered) == 1 else ""))
    if difference is not None:
        log(f"mean confidence of wrong answers, LoRA − few-shot: {_estimate_text(difference)} "
            f"(Welch)")
    return result


def _wrong_confidence_difference(lora: dict[str, Any], base: dict[str, Any]) -> Estimate | None:
    """LoRA's mean confidence on its wrong answers minus the few-shot model's (Fig. 2's claim
    is that it is higher); None unless each model got at least two answers wrong."""
    first, second = lora["wrong_confidence"], base["wrong_confidence"]
    return unpaired(first, second) if min(len(first), len(second)) >= 2 else None


def _estimate_text(estimate: Estimate) -> str:
    return (f"{estimate.value:+.3f} (95 % CI {estimate.low:+.3f} to {estimate.high:+.3f}, "
            f"p = {estimate.p_value:.3g}, n = {estimate.count})")


def entropy_probe(run: Path, out: Path, top: int) -> dict[str, Any]:
    """Correlations of the uncertainty of the top-`top` base-uncertain examples across rounds.

    Iteration 0 is the base model; iteration k the model that scored round k (trained on the
    labels of rounds 0..k-1). Only examples unlabeled in every scored round are used. Fig. 3's
    two claims get a 95 % interval each: base against every iteration, and each iteration
    against the next.
    """
    folder = RunFolder(run)
    if not folder.config_path.exists():
        raise DataError(f"'{run}' is not a run folder (no config.yaml)")
    rounds = folder.scored_rounds()
    if not rounds:
        raise DataError(f"'{run}' has no scored rounds")
    scores = {k: {row["id"]: row for row in folder.read_scores(k)} for k in rounds}
    if any("full" not in next(iter(rows.values())) for rows in scores.values()):
        raise DataError(f"'{run}' is a random run: its scores hold no model uncertainty")
    common = sorted(set.intersection(*(set(rows) for rows in scores.values())))
    first = scores[rounds[0]]
    config = load_config(folder.config_path)
    measure = str(get_strategy(config.strategy).measure)  # a random run was refused above
    if all("base" in first[i] for i in common):
        base = np.array([first[i]["base"] for i in common])
    else:  # what a dynamic run would have mixed in: the base model under the base measure
        task = load_task(config.task)
        by_id = {e.id: e for e in task.train}
        loaded = load_model(config.model)
        scoring = Scoring(base_measure(measure, task.generative), config.uncertainty.response, 1,
                          config.uncertainty.batch_size, max_length=config.model.max_length)
        base = base_scores(loaded, task, [by_id[i] for i in common], scoring,
                           cache=base_score_cache(loaded, task, scoring))
    keep = select_top(base, top)
    ids = [common[i] for i in keep]
    if len(ids) < 4:
        raise DataError(f"'{run}' left {len(ids)} examples unlabeled in every scored round; a "
                        f"correlation's interval needs 4")
    columns = [base[keep].tolist()] + [[scores[k][i]["full"] for i in ids] for k in rounds]
    labels = ["iter 0 (base)"] + [f"iter {k}" for k in rounds]
    matrix = correlation_matrix(columns)
    consecutive = [correlation(columns[a], columns[a + 1]) for a in range(len(columns) - 1)]
    out.mkdir(parents=True, exist_ok=True)
    name = f"{(folder.read_results() or {}).get('task', run.name)}, {measure.upper()}"
    plot_heatmap(matrix, labels, f"{name}: Pearson correlation, top {len(ids)} by base",
                 out / "entropy_correlation.png")
    for a in range(len(columns) - 1):
        plot_scatter(columns[a], columns[a + 1], labels[a], labels[a + 1],
                     title=f"{name}: {labels[a]} vs {labels[a + 1]}",
                     path=out / f"entropy_scatter_{a}_{a + 1}.png")
    result = {"run": str(run), "measure": measure, "top": len(ids), "iterations": labels,
              "correlation": matrix.tolist(),
              "base_with_each": [correlation(columns[0], c).to_dict() for c in columns[1:]],
              "consecutive": [c.to_dict() for c in consecutive],
              "ids": ids, "uncertainty": columns}
    write_json(out / "probe_entropy.json", result)
    for a, estimate in enumerate(consecutive):
        log(f"r({labels[a]}, {labels[a + 1]}) = {_estimate_text(estimate)}")
    return result
