"""`star noise`: how much of a round's accuracy (and macro-F1) is the training seed alone.

Round K's labels (those in force in the run's journal for the ids of rounds 0..K) are trained
again under other training seeds, in the run's config: the adapter's initial weights, the data
order and the dropout masks come from `derived_seed(seed, K, "noise_train", part=j)`, j = 0, 1,
...; the base model, pool, test set, labels and recipe stay the run's. Under `train.init:
continue` a round after the first starts, as the run did, from the run's adapter of round
K − 1, so only data order and dropout vary. Each retrain is evaluated on the run's test set
(accuracy, and macro-F1 on a choice task, as the run's rounds are), and the round's noise
record (`RunFolder.write_noise`) is written whole after each one: a killed command resumes with
the retrains still missing, and a larger `--train-seeds` adds to those done.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from star.active.loop import Experiment
from star.active.prompt_guard import BASE
from star.active.refit import handed_out
from star.active.runfolder import RunFolder, complete_rounds
from star.config import load_config
from star.errors import ConfigError
from star.model.loading import LoadedModel
from star.model.lora import adapter_off, adapter_state, load_adapter, load_adapter_state
from star.progress import log
from star.seeding import derived_seed
from star.tools.labels import open_run


def initial_adapter(loaded: LoadedModel, seed: int) -> dict[str, torch.Tensor]:
    """New initial LoRA weights, drawn as PEFT draws them when it attaches the adapter (A as
    `nn.Linear`'s default, B zero) in a forked global state seeded with `seed`."""
    from peft.tuners.lora import LoraLayer

    devices = [loaded.device] if loaded.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for module in loaded.model.modules():
            if isinstance(module, LoraLayer):
                for name in module.lora_A:
                    module.reset_lora_parameters(name, init_lora_weights=True)
    return adapter_state(loaded.model)


def retrain(experiment: Experiment, k: int, start: dict[str, torch.Tensor], seed: int
            ) -> dict[str, float | None]:
    """Round k's training again from the adapter `start`, with the training draws (data order,
    dropout) of `seed` in place of the run's; its `accuracy` and `macro_f1` (None on a
    generative task) on the run's test set. The pool and test set were drawn with the run's
    seed when the experiment was built and stay the run's."""
    labels = experiment.back_to_round(k)
    experiment.config = experiment.config.model_copy(update={"seed": seed})
    experiment.initial_adapter = start  # where `train.init: fresh` starts
    load_adapter_state(experiment.loaded.model, start)  # where `continue` starts
    _, fit = experiment.train(k, labels)
    unfitted = fit is not None and not fit.fitted  # the run would hand out the base model
    with adapter_off(experiment.loaded.model) if unfitted else nullcontext():
        scores = experiment.test_scores(experiment.predict(experiment.test))
    return {key: scores[key] for key in ("accuracy", "macro_f1")}


def _check_round(folder: RunFolder, round_index: int | None) -> tuple[dict[str, Any], int]:
    """The run's results and the round to retrain (default: the last), or a one-line error."""
    results = folder.read_results()
    rounds = complete_rounds(results) if results else []
    if not rounds:
        raise ConfigError(f"'{folder.root}' has no complete round to retrain yet")
    k = len(rounds) - 1 if round_index is None else round_index
    if k >= len(rounds):
        raise ConfigError(f"--round {k}: '{folder.root}' has rounds 0 to {len(rounds) - 1}")
    if rounds[k].get("accuracy") is None:
        raise ConfigError(f"'{folder.root}' has no test set: a retrain has no accuracy to show")
    if handed_out(rounds[k].get("guard"), rounds[k].get("fit")) == BASE:
        raise ConfigError(f"--round {k}: the run handed out the base model there (the prompt "
                          "guard's choice, or no training draw fitted its labels), so retrained "
                          "adapters would not vary the model the run used; pick a round whose "
                          "adapter was kept")
    return results, k


def noise(run: Path, round_index: int | None, train_seeds: int) -> dict[str, Any]:
    """Retrain round `round_index` of the run under `train_seeds` training seeds (those done
    before are kept), recorded with `RunFolder.write_noise`."""
    folder = open_run(run)
    results, k = _check_round(folder, round_index)
    config = load_config(folder.config_path)
    with folder.lock():  # one writer of noise.json; a run still going in the folder refuses
        experiment = Experiment(config, folder.root)
        experiment.results = results
        experiment.check_same_inputs()
        entry = complete_rounds(results)[k]
        record = folder.read_noise(k) or {"round": k, "n_labeled": entry["n_labeled"],
                                          "test_size": len(experiment.test),
                                          "run_accuracy": entry["accuracy"],
                                          "run_macro_f1": entry.get("macro_f1"), "retrains": []}
        previous = None
        if config.train.init == "continue" and k > 0:  # the run's round k started there
            load_adapter(experiment.loaded.model, folder.saved_adapter(k - 1))
            previous = adapter_state(experiment.loaded.model)
        for part in range(len(record["retrains"]), train_seeds):
            seed = derived_seed(config.seed, k, "noise_train", part=part)
            start = previous if previous is not None else initial_adapter(
                experiment.loaded, derived_seed(seed, 0, "lora_init"))
            scores = retrain(experiment, k, start, seed)
            record["retrains"].append({"training_seed": seed, **scores})
            folder.write_noise(k, record)
            shown = [f"accuracy {100 * scores['accuracy']:.2f} (the run's: "
                     f"{100 * entry['accuracy']:.2f})"]
            if scores["macro_f1"] is not None and entry.get("macro_f1") is not None:
                shown.append(f"macro-F1 {100 * scores['macro_f1']:.2f} (the run's: "
                             f"{100 * entry['macro_f1']:.2f})")
            log(f"noise: round {k}, training seed {part + 1}/{train_seeds}: {', '.join(shown)}")
    return record


def _spread(run: float, retrains: list[float]) -> str:
    """'the run's 73.74, retrained 75.11, 73.97, SD 0.81 points' of one metric."""
    spread = f", SD {100 * np.std(retrains, ddof=1):.2f} points" if len(retrains) > 1 else ""
    return (f"the run's {100 * run:.2f}, retrained {', '.join(f'{100 * a:.2f}' for a in retrains)}"
            f"{spread}")


def describe(record: dict[str, Any], path: Path) -> str:
    """The command's summary line: accuracy, and macro-F1 where every retrain has it (a record
    begun before it was kept has accuracy alone)."""
    retrains = record["retrains"]
    metrics = [f"accuracy: {_spread(record['run_accuracy'], [r['accuracy'] for r in retrains])}"]
    if record.get("run_macro_f1") is not None and all(r.get("macro_f1") is not None
                                                      for r in retrains):
        metrics.append(f"macro-F1: {_spread(record['run_macro_f1'], [r['macro_f1'] for r in retrains])}")
    return (f"round {record['round']} ({record['n_labeled']} labels, {record['test_size']} test "
            f"examples), under {len(retrains)} training seeds; {'; '.join(metrics)} -> {path}")
