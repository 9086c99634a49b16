"""The active-learning loop, read top to bottom: setup, rounds, finish.

First the base model is evaluated untrained (the zero-label point, cached). Round 0 labels
a warm start (random, or TypiClust's). Every later round scores the unlabeled pool with the
last adapter (and, for dynamic strategies, the cached base-model scores) and picks `loop.step`
examples by the strategy's batch rule (`auto` draws them from its arms' picks, `bandit`).
The picks are written as the round's batch, with the model's answers as suggestions; the
annotator (the oracle, or people) answers into the label journal; once every answer is in, a
new adapter trains on all labels so far and is evaluated (and `auto` rewards its arms by that
model), and the stopping signals and the learning-curve forecast are updated.

A round is complete when results.json lists it. A stopped run (killed, or waiting for
people) resumes with the same command and replays exactly: every random draw comes from a
generator derived from (seed, round, phase), a written batch is never recomputed (`auto`'s
draw is saved before its batch), and a scoring pass resumes from its saved parts.

Under a launcher (`torchrun --nproc_per_node N -m star run ...`) every process runs this same
loop: passes over the pool and the test set are shared out part by part, training is DDP, and
only the main process writes. Each process decides from the same files and the same gathered
numbers, so all take the same branch; the barriers sit where one reads what the main one
wrote in the same round.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from star.active.annotators import Annotator, People, make_annotator
from star.active.bandit import (
    RANDOM,
    BanditState,
    Pick,
    default_floor,
    draw,
    iw_accuracy,
    probabilities,
    update,
)
from star.active.batch import Batch, BatchItem
from star.active.cache import base_score_folder
from star.active.classes import class_metrics, rarest_class
from star.active.journal import suggestion_agreement
from star.active.learning_curve import auc, backtest, forecast
from star.active.measures import base_measure, reads_gold
from star.active.mixing import base_skill, chance_agreement, normalise_base, schedule_weight
from star.active.prompt_guard import (
    BASE,
    GuardCheck,
    class_counts,
    evidence,
    fold_indices,
    held_out_score,
    scored_classes,
    within_reach,
)
from star.active.refit import FitCheck, Refit, handed_out, of_one_class, train_until_fit
from star.active.runfolder import RunFolder, ScoringParts, complete_rounds, new_results
from star.active.scorer import (
    PoolScores,
    Scoring,
    base_score_cache,
    base_scores,
    score_in_parts,
    score_with_shortlist,
    zero_shot_correct,
)
from star.active.shortlist import shortlist_first
from star.active.stopping import stability, stopping_summary
from star.active.strategies import Scores, Strategy, acquisition_scores, get_strategy, select_batch
from star.active.typicality import Clusters, cluster_pool, typical_scores, typiclust, unit_rows
from star.config import (
    CHANGES_NO_NUMBER,
    EARLIER,
    StarConfig,
    as_begun,
    config_text,
    flatten,
    saved_keys,
    set_dotted,
)
from star.data.sources import load_task
from star.data.table import example_ids, positions_of, select
from star.data.tasks import Example, Task
from star.errors import ConfigError, DataError
from star.files import check_cache_folder
from star.model.loading import load_model, pick_device
from star.model.lora import (
    adapter_off,
    adapter_state,
    attach_lora,
    load_adapter,
    load_adapter_state,
    save_adapter,
)
from star.model.passes import Prediction, drafts, predict, split_label_words
from star.model.training import TrainStats, balances, train_adapter
from star.processes import launched_processes, map_spans, wait_for_everyone
from star.progress import log
from star.seeding import derived_seed, numpy_rng, torch_generator


def subsample(examples: Sequence[Example], size: int | None,
              rng: np.random.Generator) -> Sequence[Example]:
    """`size` examples in their file order, drawn by `rng`; all of them without a size."""
    if size is None or size >= len(examples):
        return examples
    return select(examples, np.sort(rng.permutation(len(examples))[:size]))


def examples_digest(examples: Sequence[Example]) -> str:
    """A content hash of examples as the run reads them (ids, prompts, gold responses)."""
    total = hashlib.sha256()
    for example in examples:
        total.update(json.dumps([example.id, example.prompt, example.response, example.gold])
                     .encode())
    return total.hexdigest()[:24]


def total_rounds(config: StarConfig) -> int:
    return math.ceil((config.loop.budget - config.loop.warm_start) / config.loop.step)


def check_same_config(folder: RunFolder, config: StarConfig) -> dict[str, Any] | None:
    """A run resumes only under the config it started with, read with every key added to STAR
    since at the value that did what the run did (`saved_keys`; `as_begun` resumes it so); a
    key that changes no number (`CHANGES_NO_NUMBER`) is no difference. Returns the saved
    config it checked against (None for a new run), so the caller need not read it again."""
    saved = folder.read_config()
    if saved is None:
        return None
    before, now = saved_keys(saved), flatten(config.model_dump())
    changed = sorted(key for key in (before.keys() | now.keys()) - CHANGES_NO_NUMBER
                     if before.get(key) != now.get(key))
    if changed:
        raise ConfigError(f"run folder '{folder.root}' holds a run with another config "
                          f"(differs in: {', '.join(changed)}); choose another --out")
    return saved


def choosers(config: StarConfig, strategy: Strategy) -> list[Strategy]:
    """The strategies whose picks make the batches: `auto`'s arms, else the strategy itself."""
    return [get_strategy(arm) for arm in config.bandit.arms] if strategy.bandit else [strategy]


def check_setup(config: StarConfig, strategy: Strategy, pool: Sequence[Example]) -> None:
    if config.loop.budget > len(pool):
        raise ConfigError(f"loop.budget ({config.loop.budget}) is larger than the pool "
                          f"({len(pool)} examples)")
    for chooser in choosers(config, strategy) if config.loop.annotator == "people" else []:
        if chooser.measure is not None and reads_gold(chooser.measure, config.uncertainty.response):
            why = ("its measure is PE" if chooser.measure == "pe"
                   else "uncertainty.response is 'gold'")
            arm = "" if chooser is strategy else f" (its arm '{chooser.name}')"
            raise ConfigError(f"strategy '{strategy.name}'{arm} scores the gold answers of "
                              f"unlabeled examples ({why}), which people have not given yet; use "
                              "a label-free strategy (e.g. me-star) with uncertainty.response: own")


class Experiment:
    """One strategy, one seed: the state a run needs between rounds."""

    def __init__(self, config: StarConfig, out: Path) -> None:
        self.processes = launched_processes(pick_device(config.model.device))
        self.folder = RunFolder(out, writes=self.processes.main)
        self.config = config = self.as_begun(config)
        check_same_config(self.folder, config)
        self.strategy: Strategy = get_strategy(config.strategy)
        self.choosers = choosers(config, self.strategy)
        self.balance_advised = False
        self.task: Task = load_task(config.task)
        seed = config.seed
        self.pool = subsample(self.task.train, config.loop.pool_size, numpy_rng(seed, 0, "pool"))
        self.test = subsample(self.task.test, config.loop.test_size, numpy_rng(seed, 0, "test"))
        self.stop_set = [] if self.test else subsample(self.pool, config.loop.stop_set_size,
                                                       numpy_rng(seed, 0, "stop"))
        check_setup(config, self.strategy, self.pool)
        self.annotator: Annotator = make_annotator(config.loop.annotator, self.pool)
        if not self.processes.main:  # the main process answers into the journal
            self.annotator = People()
        check_cache_folder(base_score_folder())
        self.loaded = load_model(config.model)
        _ = self.loaded.fingerprint  # the base model's caches' key: the files as loaded
        split = split_label_words(self.loaded.tokenizer, self.task)
        if split and self.processes.main:
            log("warning: this tokenizer splits the label words differently alone (as STAR "
                "scores and trains them) than after a prompt: " + "; ".join(split))
        attach_lora(self.loaded, config.lora, derived_seed(seed, 0, "lora_init"))
        self.initial_adapter = adapter_state(self.loaded.model)
        self.results: dict[str, Any] = {}
        self.labeled: list[str] = []
        self.pool_means: dict[int, float | None] = {}
        """Round -> the pool's mean μ_f, from the scoring pass this process ran."""
        self.base_hidden: np.ndarray | None = None
        """[pool, hidden size]: the base model's answer-position states (typiclust), once, each
        scaled to length 1 (`unit_rows`)."""
        self.last_base_correct: tuple[list[tuple[str, str]], list[bool]] | None = None
        """`base_correct`'s last examples (id, answer) and its answer for them."""
        self.skills: dict[int, float] = {}
        """Round -> the base model's skill on the labels before it (schedule `evidence`)."""
        self.selector: dict[str, torch.Tensor] | None = None
        """The adapter the last round trained where it handed out the base model instead and
        `guard.select_with` is `trained`: it picks the next batch (`selecting`)."""

    def as_begun(self, config: StarConfig) -> StarConfig:
        """`config`, or where the folder holds a run begun before a key whose default changed
        what runs do (`config.EARLIER`), `config` with that key as the run began: a run goes
        on as it began, whatever command resumes it (`star next` reads the saved config)."""
        saved = self.folder.read_config()
        if saved is None:
            return config
        config, taken = as_begun(config, saved)
        if taken and self.processes.main:
            log(f"note: {self.folder.root} began before " + ", ".join(taken) + "; it goes on as "
                "it began: " + ", ".join(f"{key}: {EARLIER[key]}" for key in taken))
        return config

    # -- the recipe ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Rounds until the budget is spent, or until a batch waits for people."""
        self.folder.create()
        with self.folder.lock():
            # Checked again under the lock: another process may have started the folder since.
            saved = check_same_config(self.folder, self.config)
            if saved is None:
                if self.folder.started():
                    raise ConfigError(f"run folder '{self.folder.root}' holds a run but no "
                                      "config.yaml to check this config against; restore it, or "
                                      "choose another --out")
                # Written only now, once model and data loaded: a failed start blocks nothing.
                self.folder.write_config(config_text(self.resolved_config()))
            else:
                self.save_unnumbered_changes(saved)
            self.resume()
            self.check_same_inputs()
            self.drop_old_adapters()  # those a stop after a round's record left behind
            if "baselines" not in self.results:
                self.results["baselines"] = self.baselines()
                self.folder.write_results(self.results)
            loop = self.config.loop
            while not complete_rounds(self.results) or len(self.labeled) < loop.budget:
                if not self.run_round(len(complete_rounds(self.results))):
                    break
        return self.results

    def resume(self) -> None:
        self.results = self.folder.read_results() or new_results(
            task=self.task.title, strategy=self.config.strategy, seed=self.config.seed,
            model=self.config.model.name, pool_size=len(self.pool), test_size=len(self.test))
        self.results.pop("waiting", None)
        done = complete_rounds(self.results)
        self.labeled = [i for r in done for i in r["selected_ids"]]
        if done and len(self.labeled) < self.config.loop.budget:
            # Only a round to come needs the last adapter: a finished run reopens from its
            # records alone, so its adapters can be deleted or left behind on another machine.
            last = len(done) - 1
            if self.selects_apart(handed_out(done[-1].get("guard"), done[-1].get("fit"))):
                trained = self.folder.trained_adapter_dir(last)
                if not trained.exists():
                    raise DataError(f"round {last} handed out the base model and kept the adapter "
                                    f"it trained to pick the next batch (guard.select_with: "
                                    f"trained), but '{trained}' is missing; restore it")
                load_adapter(self.loaded.model, trained)
                self.selector = adapter_state(self.loaded.model)
            load_adapter(self.loaded.model, self.folder.adapter_dir(last))
            log(f"resuming {self.folder.root} after round {last} ({len(self.labeled)} labels)")

    def drop_old_adapters(self) -> None:
        """Under `loop.keep_adapters: last`, delete the adapters no command will read: those
        before the last complete round, and under `train.init: continue` before the one before
        it (from which `star noise` retrains the last round)."""
        if self.config.loop.keep_adapters == "last":
            kept = 2 if self.config.train.init == "continue" else 1
            self.folder.drop_adapters(before=len(complete_rounds(self.results)) - kept)

    def resolved_config(self) -> StarConfig:
        """The config as saved: with the task's title as reports show it, so a reload of the
        run's config.yaml (named "config") keeps it."""
        config = self.config.model_copy(deep=True)
        config.task.title = self.task.title
        return config

    def save_unnumbered_changes(self, saved: dict[str, Any]) -> None:
        """A run may go on under another value of a key that changes no number
        (`CHANGES_NO_NUMBER`: its title, which adapters it keeps); its config.yaml then says
        so, as it must say what the run folder holds. Only those keys are rewritten: the rest
        stays as the run began."""
        before, now = flatten(saved), flatten(self.resolved_config().model_dump())
        changed = sorted(key for key in CHANGES_NO_NUMBER if before.get(key) != now[key])
        if not changed:
            return
        for key in changed:
            set_dotted(saved, key, now[key])
        self.folder.write_config(config_text(saved))
        if self.processes.main:
            log(f"note: {self.folder.config_path} now says " +
                ", ".join(f"{key}: {now[key]}" for key in changed) + " (no number changes)")

    def inputs(self) -> dict[str, str]:
        """What the run's numbers depend on besides its config: the base model's files, the
        pool's and test set's examples, and the hardware (on a CPU, which one) and dtype that
        computed them."""
        cpu = self.loaded.cpu
        return {"model files": self.loaded.fingerprint, "pool examples": examples_digest(self.pool),
                "test examples": examples_digest(self.test), "hardware": self.loaded.hardware,
                **({"cpu": cpu} if cpu is not None else {}),
                "dtype": str(self.loaded.compute_dtype).removeprefix("torch.")}

    def check_same_inputs(self) -> None:
        """A resumed run continues only on the inputs it started with, or its rounds would not
        replay: new weights under the same model name, an edited data file, a GPU's bf16 after
        a CPU's fp32, another CPU's bf16 kernels. A run from before STAR recorded them records
        them now; one from before it recorded the CPU goes on unchecked on that, as its record
        cannot say where it ran."""
        now = self.inputs()
        then = self.results.setdefault("inputs", now)
        changed = [key for key in now if key in then and then[key] != now[key]]
        if changed:
            raise ConfigError(f"run folder '{self.folder.root}' started with other "
                              + "; ".join(f"{key} ({then.get(key)} then, {now[key]} now)"
                                          for key in changed)
                              + ": its rounds would not replay; resume it where it started, "
                                "or choose another --out")

    def run_round(self, k: int) -> bool:
        """Round k: select, label, train, evaluate. False when it waits for labels."""
        start = time.perf_counter()
        written = self.folder.read_batch(k)
        wait_for_everyone(self.processes)  # all have read before the main one writes batch k
        batch = written or self.new_batch(k)
        score_seconds = time.perf_counter() - start
        weighted = self.config.uncertainty.mix == "weighted"  # `subtract` has no λ
        dynamic = any(s.dynamic for s in self.choosers)
        if dynamic and weighted and k > 0:  # also for a batch read back after a stop
            self.results.setdefault("lambda", {})[str(k)] = self.weight(k)
            if self.config.uncertainty.schedule == "evidence":
                self.results.setdefault("base_skill", {})[str(k)] = self.base_skill(k)
        labels = self.collect_labels(batch)
        if labels is None:
            return False
        pool_counts = self.unlabeled_label_counts()
        self.labeled += batch.ids
        guard = self.guard(k, labels)
        train, fit = self.train(k, labels)
        self.advise_balance(labels)
        handed = handed_out(None if guard is None else guard.to_dict(),
                            None if fit is None else fit.to_dict())
        self.selector = None
        if self.selects_apart(handed):
            self.selector = adapter_state(self.loaded.model)
            if self.processes.main:
                save_adapter(self.loaded.model, self.folder.trained_adapter_dir(k))
        if handed == BASE:
            load_adapter_state(self.loaded.model, self.initial_adapter)  # B = 0: the base model
        if self.processes.main:
            save_adapter(self.loaded.model, self.folder.adapter_dir(k))
        start = time.perf_counter()
        evaluation = self.evaluate(k)
        eval_seconds = time.perf_counter() - start
        bandit = self.reward_arms(k, labels) if self.strategy.bandit and k > 0 else None
        complete_rounds(self.results).append({
            "round": k, "n_labeled": len(self.labeled), **evaluation,
            "pool_uncertainty": self.pool_uncertainty(k, batch),
            "selected_ids": batch.ids, "label_counts": dict(sorted(Counter(labels.values()).items())),
            "batch_label_counts": dict(sorted(Counter(labels[i] for i in batch.ids).items())),
            "pool_label_counts": pool_counts,
            "guard": None if guard is None else guard.to_dict(),
            "fit": None if fit is None else fit.to_dict(),
            **({"bandit": bandit} if bandit else {}),
            "suggestion_agreement": suggestion_agreement(batch, self.folder.journal.latest()),
            "blind": self.config.loop.blind_labeling,
            "train_seconds": round(train.seconds, 3), "score_seconds": round(score_seconds, 3),
            "eval_seconds": round(eval_seconds, 3), "train_loss": train.final_loss,
            "train_padding_fraction": train.padding_fraction})
        curve = [r for r in complete_rounds(self.results) if r["accuracy"] is not None]
        self.results["auc"] = auc([r["n_labeled"] for r in curve],
                                  [r["accuracy"] for r in curve]) if curve else None
        self.results["stopping"] = stopping_summary(complete_rounds(self.results))
        self.results.update(self.forecast_advice(k, curve))
        self.folder.write_results(self.results)
        self.drop_old_adapters()  # only now: until round k is recorded, a resume needs k − 1's
        accuracy = evaluation["accuracy"]
        shown = f"accuracy {accuracy:.4f}" if accuracy is not None else \
            f"agreement {evaluation['agreement']}"
        log(f"[{self.config.strategy} seed {self.config.seed}] round {k}: "
            f"{len(self.labeled)} labels, {shown} "
            f"(score {score_seconds:.0f}s, train {train.seconds:.0f}s, eval {eval_seconds:.0f}s)")
        return True

    def advise_balance(self, labels: dict[str, str]) -> None:
        """Once a process: a note when the labels so far are lopsided and the loss unweighted."""
        if (self.balance_advised or self.task.generative or not self.processes.main
                or self.config.train.balance != "none"):
            return
        rare = rarest_class(Counter(labels.values()), self.task.labels)
        if rare is None:
            return
        self.balance_advised = True
        log(f"note: {rare[1]} of the {len(labels)} labels are '{rare[0]}', the rarest class; the "
            "unweighted loss lets the common classes outvote it (on SST-2 with 10 % negatives, "
            "random's adapters fell below the untrained prompt: docs/label-savings); "
            "train.balance: classes weighs the classes alike")

    # -- the steps ----------------------------------------------------------------------------
    def new_batch(self, k: int) -> Batch:
        """Pick round k's examples, write their scores and the batch with the model's guesses."""
        loop = self.config.loop
        if k == 0:
            rng = numpy_rng(self.config.seed, 0, "warm_start")
            if loop.warm_start_strategy == "typiclust":
                nothing = np.zeros(len(self.pool), dtype=bool)
                chosen = typiclust(self.clusters(nothing, loop.warm_start, rng), nothing,
                                   loop.warm_start, rng=rng)
            else:
                chosen = rng.permutation(len(self.pool))[: loop.warm_start]
            picked = [self.pool[i] for i in sorted(chosen)]
            uncertainty: list[float | None] = [None] * len(picked)
        else:
            rows = np.setdiff1d(np.arange(len(self.pool)), positions_of(self.pool, self.labeled))
            unlabeled = select(self.pool, rows)
            count = min(loop.step, loop.budget - len(self.labeled))
            labeled = np.ones(len(self.pool), dtype=bool)
            labeled[rows] = False
            arms: dict[int, str] | None = None  # `auto`: each pick's arm
            with self.selecting():
                if self.strategy.bandit:
                    chosen, scores, arms = self.bandit_batch(k, rows, unlabeled, labeled, count)
                else:
                    chosen, scores = self.choose(self.strategy, k, rows, unlabeled, labeled,
                                                 count, store=self.folder.scoring_parts(k))
            self.pool_means[k] = None if scores.passes is None else float(np.mean(scores.full))
            top = set(chosen.tolist())
            self.folder.write_scores(k, example_ids(unlabeled), scores, top, arms=arms)
            picked = [unlabeled[i] for i in sorted(top)]
            uncertainty = [float(scores.score[i]) for i in sorted(top)]
        items = [BatchItem(e.id, e.fields, e.prompt, guess, confidence=confidence, uncertainty=u)
                 for e, (guess, confidence), u in zip(picked, self.guesses(picked), uncertainty,
                                                     strict=True)]
        batch = Batch(k, items, list(self.task.labels), self.task.display())  # no labels: text
        self.folder.write_batch(batch)
        self.folder.scoring_parts(k).clear()  # auto's arms' parts too: they sit below it
        return batch

    def selects_apart(self, handed: str | None) -> bool:
        """Whether a round that handed out `handed` (`refit.handed_out`; None: unchecked) leaves
        its trained adapter to pick the next batch: the base model handed out, `guard.select_with:
        trained`, and a strategy that scores with the model (random and typiclust alone do not)."""
        return (handed == BASE and self.config.guard.select_with == "trained"
                and any(chooser.reads_model for chooser in self.choosers))

    @contextmanager
    def selecting(self) -> Iterator[None]:
        """The model that picks the next batch, in place for the block: the adapter the last
        round trained, where it handed out the base model instead (`selects_apart`); else the
        model handed out, which is in place already."""
        if self.selector is None:
            yield
            return
        handed = adapter_state(self.loaded.model)
        load_adapter_state(self.loaded.model, self.selector)
        try:
            yield
        finally:
            load_adapter_state(self.loaded.model, handed)

    def choose(self, strategy: Strategy, k: int, rows: np.ndarray, unlabeled: Sequence[Example],
               labeled: np.ndarray, count: int, *, store: ScoringParts) -> tuple[np.ndarray, Scores]:
        """`strategy`'s `count` picks of round k (positions into `unlabeled`, the pool at `rows`;
        `labeled`: the pool's mask) in pick order, and the scores they were taken by. The
        scoring pass keeps its parts in `store`."""
        seed = self.config.seed
        clusters = (self.clusters(labeled, count, numpy_rng(seed, k, "typiclust"))
                    if strategy.typical else None)
        if clusters is not None and strategy.measure is None:  # `typiclust` alone
            typical = typiclust(clusters, labeled, count, rng=numpy_rng(seed, k, "batch_rule"))
            return np.searchsorted(rows, typical), Scores(typical_scores(clusters, labeled)[rows])
        scores, outputs = self.score(strategy, unlabeled, rows, k, count=count, clusters=clusters,
                                     store=store)
        chosen = select_batch(strategy, scores.score, count, rng=numpy_rng(seed, k, "batch_rule"),
                              probs=outputs.probs if outputs else None,
                              hidden=outputs.hidden if outputs else None,
                              candidates=self.config.selection.candidates,
                              beta=self.config.selection.beta)
        return chosen, scores

    def bandit_batch(self, k: int, rows: np.ndarray, unlabeled: Sequence[Example],
                     labeled: np.ndarray, count: int
                     ) -> tuple[np.ndarray, Scores, dict[int, str]]:
        """`auto`'s picks of round k (as `choose`'s), drawn from its arms' mixture: each arm but
        random advises from its own picks, which it makes as it would alone (its scoring parts
        apart: their keys are the examples' ids). Returns also each pick's q (as its score) and
        its arm. The draw goes to results.json before the batch is written: the round's update
        reads it there after a stop, and a stop before the batch draws the same again."""
        arms = self.config.bandit.arms
        shares = probabilities(self.bandit_state(), self.bandit_floor())
        rankings = {arm: self.choose(get_strategy(arm), k, rows, unlabeled, labeled, count,
                                     store=self.folder.scoring_parts(k, arm))[0]
                    for arm in arms if arm != RANDOM}
        chosen, picks = draw(arms, shares, rankings, list(example_ids(unlabeled)), count,
                             rng=numpy_rng(self.config.seed, k, "bandit"))
        self.results["bandit_draw"] = {"round": k, "probabilities": shares.tolist(),
                                       "picks": [pick.to_json() for pick in picks]}
        self.folder.write_results(self.results)
        score = np.zeros(len(unlabeled))
        score[chosen] = [pick.probability for pick in picks]
        return chosen, Scores(score), {int(i): pick.arm for i, pick in zip(chosen, picks,
                                                                           strict=True)}

    def bandit_horizon(self) -> int:
        """T: the picks the bandit makes in the whole run (the warm start is not its)."""
        return self.config.loop.budget - self.config.loop.warm_start

    def bandit_floor(self) -> float:
        """p_min: `bandit.floor`, else libact's, at most 1/N (a budget of few picks for many
        arms: then the arms share every draw equally)."""
        arms = len(self.config.bandit.arms)
        return self.config.bandit.floor or min(default_floor(arms, self.bandit_horizon()), 1 / arms)

    def bandit_state(self) -> BanditState:
        """The arms' log-weights after the last complete round: a resume reads them back."""
        entries = [r["bandit"] for r in complete_rounds(self.results) if "bandit" in r]
        return (BanditState.from_json(entries[-1]) if entries
                else BanditState.start(self.config.bandit.arms))

    def reward_arms(self, k: int, labels: dict[str, str]) -> dict[str, Any]:
        """Round k's bandit record: its draw (the shares it was drawn with, the picks), the reward
        of the model the round hands out (ALBL's importance-weighted accuracy on every label the
        bandit bought, class-balanced under `train.balance: classes`, `bandit.iw_accuracy`), and
        the arms' log-weights after Exp4.P's update."""
        drawn = self.results.pop("bandit_draw", None)
        if drawn is None or drawn["round"] != k:
            raise DataError(f"'{self.folder.results_path}' holds no bandit draw of round {k}, "
                            "which wrote its batch; restore it, or choose another --out")
        picks = [Pick.from_json(pick) for pick in drawn["picks"]]
        bought = [Pick.from_json(pick) for r in complete_rounds(self.results) if "bandit" in r
                  for pick in r["bandit"]["picks"]] + picks
        answers = self.predict([self.task.with_label(e, labels[e.id])
                                for e in self.examples([pick.id for pick in bought])])
        horizon = self.bandit_horizon()
        golds = ([str(a.gold) for a in answers]  # the classes weigh as in the loss
                 if balances(self.config.train, self.task) else None)
        reward = iw_accuracy(bought, [bool(a.correct) for a in answers], horizon, golds)
        state = update(self.bandit_state(), np.array(drawn["probabilities"]), picks, reward,
                       floor=self.bandit_floor(), delta=self.config.bandit.delta, horizon=horizon)
        return {**state.to_json(), "probabilities": drawn["probabilities"],
                "picks": drawn["picks"], "reward": reward}

    def collect_labels(self, batch: Batch) -> dict[str, str] | None:
        """Every label so far (id -> answer), or None while the batch still waits for some."""
        self.annotator.answer(batch, dict(zip(batch.ids, self.examples(batch.ids), strict=True)),
                              self.folder.journal)
        wait_for_everyone(self.processes)  # the main process's answers are in the journal
        answered = self.folder.journal.latest()
        missing = [i for i in batch.ids if i not in answered]
        if missing:
            self.results["waiting"] = {"round": batch.round, "labels": len(missing),
                                       "batch": len(batch.ids)}
            self.folder.write_results(self.results)
            return None
        labels = self.folder.journal.in_force([*self.labeled, *batch.ids])
        return {i: answer.value for i, answer in labels.items()}

    def score(self, strategy: Strategy, unlabeled: Sequence[Example], rows: np.ndarray, k: int,
              *, count: int, clusters: Clusters | None, store: ScoringParts
              ) -> tuple[Scores, PoolScores | None]:
        """Round k's acquisition scores of the unlabeled examples (at `rows` of the pool), and
        the pass's outputs that the batch rule reads (None for random, which runs no pass).
        A `typiclust-` strategy mixes in the typicality of its pool's `clusters` where μ_b was."""
        settings = self.config.uncertainty
        if strategy.measure is None:
            draws = numpy_rng(self.config.seed, k, "random_scores").random(len(unlabeled))
            return Scores(draws), None
        passes = settings.mc_passes if strategy.mc_dropout else 1
        seed, device = self.config.seed, self.loaded.device
        masks = ((lambda part: torch_generator(seed, k, "mc_dropout", device, part=part))
                 if strategy.mc_dropout else None)
        base = None
        if clusters is not None:
            labeled = np.ones(len(self.pool), dtype=bool)
            labeled[rows] = False
            base = normalise_base(typical_scores(clusters, labeled), rows, settings.normalise)
        elif strategy.dynamic:
            scoring = replace(self.scoring(strategy, 1),
                              measure=base_measure(strategy.measure, self.task.generative))
            pool_base = base_scores(self.loaded, self.task, self.pool, scoring,
                                    cache=base_score_cache(self.loaded, self.task, scoring),
                                    processes=self.processes)
            base = normalise_base(pool_base, rows, settings.normalise)

        # only the weighted mix reads λ(t); under `evidence` it costs base-model answers
        weight = self.weight(k) if base is not None and settings.mix == "weighted" else 0.0

        def ranked(per_pass: np.ndarray) -> Scores:
            return acquisition_scores(strategy, per_pass, base, weight=weight,
                                      mix=settings.mix, normalise=settings.normalise)

        common = {"features": strategy.features, "processes": self.processes,
                  "store": store, "desc": f"scoring round {k}"}
        size = self.config.selection.shortlist * count
        if masks is not None and 0 < size < len(unlabeled):
            outputs, shortlist = score_with_shortlist(
                self.loaded, self.task, unlabeled, self.scoring(strategy, passes),
                size=size,
                rank=lambda per_pass: ranked(per_pass).score, masks=masks,
                first_masks=lambda part: torch_generator(seed, k, "mc_first_pass", device, part=part),
                **common)
            scores = ranked(outputs.passes)
            scores.score = shortlist_first(scores.score, shortlist)
            return scores, outputs
        outputs = score_in_parts(self.loaded, self.task, unlabeled, self.scoring(strategy, passes),
                                 masks=masks, **common)
        return ranked(outputs.passes), outputs

    def weight(self, k: int) -> float:
        """λ(t) of round k: t counts acquisition rounds from 0, so round 1 has t = 0."""
        settings = self.config.uncertainty
        skill = self.base_skill(k) if settings.schedule == "evidence" else 1.0
        return schedule_weight(k - 1, settings.schedule, rate=settings.rate,
                               total=total_rounds(self.config), constant=settings.constant,
                               skill=skill)

    def base_skill(self, k: int) -> float:
        """The base model's accuracy over chance (`mixing.base_skill`) on the labels of the rounds
        before k: its answers (adapter off, no dropout) against the answers in force, which
        cannot change once their round is complete; so a resume computes the same number."""
        if k not in self.skills:
            ids = [i for r in complete_rounds(self.results)[:k] for i in r["selected_ids"]]
            labels = {i: answer.value for i, answer in self.folder.journal.in_force(ids).items()}
            with adapter_off(self.loaded.model):
                answers = self.predict([self.task.with_label(e, labels[e.id])
                                        for e in self.examples(ids)])
            accuracy = float(np.mean([bool(a.correct) for a in answers]))
            chance = chance_agreement([a.prediction for a in answers], [a.gold for a in answers])
            self.skills[k] = base_skill(accuracy, chance)
        return self.skills[k]

    def scoring(self, strategy: Strategy, passes: int) -> Scoring:
        settings = self.config.uncertainty
        return Scoring(strategy.measure or "me", settings.response, passes,
                       settings.batch_size, max_length=self.config.model.max_length,
                       part_size=settings.part_size)

    def train(self, k: int, labels: dict[str, str]) -> tuple[TrainStats, FitCheck | None]:
        """Round k's adapter, trained on every label so far; under `train.retries`, trained
        again under the next training draws while it fits its labels worse than the base model
        or, under `train.beat_chance`, no better than chance (once where the labels hold one
        class; `star.active.refit`), with the check that decided it (None without retries). The
        stats are the kept draw's, its seconds those of every draw."""
        examples = self.labeled_examples(labels)
        retries, seed = self.config.train.retries, self.config.seed
        if not retries:
            return self.train_on(examples, k, seed=seed), None
        start = adapter_state(self.loaded.model)  # where `continue` goes on from, every draw
        classes = None if self.task.generative else [e.gold for e in examples]
        base = held_out_score(self.base_correct(examples), classes)
        stats: list[TrainStats] = []

        def draw(training_seed: int) -> float:
            load_adapter_state(self.loaded.model, start)
            stats.append(self.train_on(examples, k, seed=training_seed))
            return held_out_score([bool(p.correct) for p in self.predict(examples)], classes)

        seeds = [seed, *(derived_seed(seed, k, "train_retry", part=i)
                         for i in range(1, retries + 1))]
        beats = classes is not None and self.config.train.beat_chance
        check = train_until_fit(
            Refit(draw, lambda: adapter_state(self.loaded.model),
                  lambda state: load_adapter_state(self.loaded.model, state)),
            seeds, base, metric="accuracy" if classes is None else "balanced_accuracy",
            chance=1 / len(set(classes)) if beats else None)
        if of_one_class(check.to_dict()) and self.processes.main:
            log(f"[{self.config.strategy} seed {seed}] round {k}: its {len(examples)} labels "
                f"are all '{classes[0]}', so no adapter trained on them can tell the task's "
                "classes apart (train.beat_chance): the base model is handed out")
        if check.retried and self.processes.main:
            first = check.draws[0]
            bar = (f"below the base model's {100 * base:.1f} %" if first < base else
                   f"no better than chance, {100 * check.chance:.1f} %")
            log(f"[{self.config.strategy} seed {seed}] round {k}: the adapter fitted its "
                f"{len(examples)} labels at {100 * first:.1f} %, {bar} "
                f"({check.metric.replace('_', ' ')}); trained "
                f"{len(check.draws)} draws (" + ", ".join(f"{100 * d:.1f} %" for d in check.draws)
                + (f"), kept draw {check.kept + 1}" if check.fitted else
                   "): none fitted, the base model is handed out"))
        kept = stats[check.kept]
        return replace(kept, seconds=sum(s.seconds for s in stats)), check

    def train_on(self, examples: Sequence[Example], k: int, *, seed: int) -> TrainStats:
        """Round k's recipe on `examples`: from the initial adapter (`train.init: fresh`) or from
        the adapter as it stands (`continue`), its draws from `seed`."""
        config = self.config
        if config.train.init == "fresh":
            load_adapter_state(self.loaded.model, self.initial_adapter)
        decays = self.strategy.l2_on_b or config.train.decay_b_always
        return train_adapter(self.loaded, self.task, examples, config=config.train,
                             weight_decay_b=config.train.weight_decay_b if decays else 0.0,
                             seed=seed, round_index=k, max_length=config.model.max_length,
                             processes=self.processes)

    def base_correct(self, examples: list[Example]) -> list[bool]:
        """Whether the base model (adapter off) answers each of `examples` right. A round's
        prompt guard and fit check both ask it of the round's labels: the last answer is kept."""
        key = [(e.id, e.response) for e in examples]
        if self.last_base_correct is None or self.last_base_correct[0] != key:
            with adapter_off(self.loaded.model):
                self.last_base_correct = (key, [bool(p.correct) for p in self.predict(examples)])
        return self.last_base_correct[1]

    def back_to_round(self, k: int) -> dict[str, str]:
        """Set the labeled ids to those recorded up to round k, and return their labels in
        force in the journal: round k's labels again, for a tool that retrains or rechecks a
        finished round (`star noise`, the label-savings study's guard replay)."""
        self.labeled = [i for entry in complete_rounds(self.results)[: k + 1]
                        for i in entry["selected_ids"]]
        return {i: answer.value for i, answer in self.folder.journal.in_force(self.labeled).items()}

    def labeled_examples(self, labels: dict[str, str]) -> list[Example]:
        """The labeled examples, in labeling order, each with the answer in force."""
        return [self.task.with_label(e, labels[e.id]) for e in self.examples(self.labeled)]

    def guard(self, k: int, labels: dict[str, str]) -> GuardCheck | None:
        """The prompt guard's check of round k (`star.active.prompt_guard`): the recipe's k-fold
        held-out accuracy on the labels so far against the base model's on the same labels, or
        the base model without folds where a class has under `guard.min_per_class` labels (under
        `guard.short_class: score_the_rest`, where fewer than two classes have that many; the
        classes under it are then left out of both scores). None where the guard is off or the
        round is past its reach (`within_reach`). Leaves the adapter as it found it; every
        draw comes from (seed, round, phase)."""
        settings, seed = self.config.guard, self.config.seed
        if not settings.folds:
            return None
        start = time.perf_counter()
        examples = self.labeled_examples(labels)
        folds = min(settings.folds, len(examples))  # leave-one-out below k labels
        if folds < 2:
            return None
        classes = None if self.task.generative else [e.gold for e in examples]
        counts = None if classes is None else class_counts(classes, self.task.labels)
        if not within_reach(counts, len(examples), settings.max_labels, settings.reach):
            return None
        fewest = None if counts is None else min(counts.values())
        scored = None if counts is None else \
            scored_classes(counts, settings.min_per_class, settings.short_class)
        base = self.base_correct(examples)
        tuned = None if classes is not None and scored is None \
            else self.cross_validated(k, examples, folds)
        left_out = [c for c in self.task.labels if scored and c not in scored]
        check = GuardCheck.of(tuned, base, classes, folds=folds, fewest=fewest,
                              seconds=time.perf_counter() - start, left_out=left_out)
        if self.processes.main:
            log(f"[{self.config.strategy} seed {seed}] round {k} guard on {check.labels} labels: "
                f"{evidence(check.to_dict())}, the base model {100 * check.base:.1f} % "
                f"({check.metric.replace('_', ' ')}): the {check.chosen} model is handed out")
        return check

    def cross_validated(self, k: int, examples: list[Example], folds: int) -> list[bool]:
        """Whether each labeled example is answered right by the recipe trained, as round k
        trains, on the folds that hold it out. Leaves the adapter as it found it."""
        seed = self.config.seed
        before = adapter_state(self.loaded.model)
        tuned = [False] * len(examples)
        for fold, held_out in enumerate(fold_indices(len(examples), folds,
                                                     numpy_rng(seed, k, "guard_folds"))):
            load_adapter_state(self.loaded.model, before)  # `continue` goes on from the same one
            kept = np.setdiff1d(np.arange(len(examples)), held_out)
            self.train_on([examples[i] for i in kept], k,
                          seed=derived_seed(seed, k, "guard_train", part=fold + 1))
            for i, answer in zip(held_out, self.predict([examples[i] for i in held_out]),
                                 strict=True):
                tuned[i] = bool(answer.correct)
        load_adapter_state(self.loaded.model, before)
        return tuned

    def clusters(self, labeled: np.ndarray, count: int, rng: np.random.Generator) -> Clusters:
        """typiclust's k-means of the base model's hidden states, |labeled| + count clusters."""
        if self.base_hidden is None:
            with adapter_off(self.loaded.model):
                self.base_hidden = unit_rows(score_in_parts(
                    self.loaded, self.task, self.pool, self.scoring(self.strategy, 1),
                    features=True,
                    processes=self.processes, store=self.folder.base_hidden_parts(),
                    desc="base hidden states").hidden)
        settings = self.config.selection
        return cluster_pool(self.base_hidden, labeled, count, rng=rng,
                            neighbours=settings.neighbours, max_clusters=settings.max_clusters,
                            min_size=settings.min_cluster_size)

    def unlabeled_label_counts(self) -> dict[str, int] | None:
        """The gold labels of the pool not labeled yet, which random selection would draw in
        proportion; None where people label (the pool's labels are unknown)."""
        if self.config.loop.annotator != "oracle":
            return None
        taken = set(self.labeled)
        return dict(sorted(Counter(e.gold for e in self.pool if e.id not in taken).items()))

    def examples(self, ids: list[str]) -> list[Example]:
        """The pool's examples with these ids, in this order."""
        return [self.pool[int(i)] for i in positions_of(self.pool, ids)]

    def guesses(self, examples: list[Example]) -> list[tuple[str, float]]:
        """What the batch suggests to annotators: the predicted label, or a draft response."""
        if self.task.generative:
            return drafts(self.loaded, self.task, examples, **self.sizes())
        return [(p.prediction, p.confidence) for p in self.predict(examples)]

    def predict(self, examples: Sequence[Example]) -> list[Prediction]:
        """The model's answers, part by part (shared between processes)."""
        parts = map_spans(examples, self.config.uncertainty.part_size,
                          lambda part, span: predict(self.loaded, self.task, span, **self.sizes()),
                          processes=self.processes)
        return [answer for part in parts for answer in part]

    def sizes(self) -> dict[str, int]:
        """Batch size and length limit of every inference pass."""
        return {"batch_size": self.config.uncertainty.batch_size,
                "max_length": self.config.model.max_length}

    def evaluate(self, k: int) -> dict[str, Any]:
        """Accuracy on the test set, and the stopping signals on the fixed set (the test set,
        or without one the stop set): agreement with the last round's predictions (Cohen's κ),
        the share that changed, and the mean uncertainty."""
        predictions = self.predict(self.test or self.stop_set)
        self.folder.write_predictions(k, [asdict(p) for p in predictions])
        previous = self.folder.read_predictions(k - 1) if k > 0 else None
        signals = stability([p["prediction"] for p in previous] if previous else None,
                            [p.prediction for p in predictions],
                            [p.confidence for p in predictions])
        return {**self.test_scores(predictions), **signals}

    def test_scores(self, predictions: Sequence[Prediction]) -> dict[str, Any]:
        """A round's numbers from its test-set predictions, as results.json keeps them:
        `accuracy` and the per-class metrics (`classes.class_metrics`); all None without a test
        set (the predictions are then the stop set's), the per-class ones on a generative task."""
        accuracy = float(np.mean([p.correct for p in predictions])) if self.test else None
        per_class = class_metrics([p.prediction for p in predictions],
                                  [p.gold for p in predictions],
                                  self.task.labels if self.test and not self.task.generative else [])
        return {"accuracy": accuracy, **per_class}

    def pool_uncertainty(self, k: int, batch: Batch) -> float | None:
        """The overall uncertainty of the unlabeled pool when round k's batch was chosen: the
        mean μ_f of the strategy's measure (Zhu et al. 2008); None for random and round 0.
        Kept from the scoring pass; read back from scores.jsonl when the batch was."""
        if k == 0 or self.strategy.measure is None:
            return None
        if k in self.pool_means:
            return self.pool_means[k]
        return float(np.mean([row["full"] for row in self.folder.iter_scores(batch.round)]))

    def baselines(self) -> dict[str, float | None]:
        """The points a tuned adapter must beat on the test set: chance (choice tasks), the
        majority class, and the base model before any training (n_labeled = 0, cached)."""
        if not self.test:
            return {"chance": None, "majority": None, "zero_shot": None}
        golds = Counter(e.gold for e in self.test)
        correct = zero_shot_correct(self.loaded, self.task, self.test, **self.sizes(),
                                    part_size=self.config.uncertainty.part_size,
                                    processes=self.processes)
        return {"chance": None if self.task.generative else 1.0 / len(self.task.labels),
                "majority": max(golds.values()) / len(self.test),
                "zero_shot": float(np.mean(correct))}

    def forecast_advice(self, k: int, curve: list[dict[str, Any]]) -> dict[str, Any]:
        """What more labels would buy: the learning curve so far extrapolated to the budget
        (to twice the budget once it is spent) with a bootstrap interval, and the honest check
        of that method on this run: its first half fitted, its second half predicted."""
        loop = self.config.loop
        n = [r["n_labeled"] for r in curve]
        accuracy = [r["accuracy"] for r in curve]
        at = loop.budget if n and n[-1] < loop.budget else 2 * loop.budget
        made = forecast(n, accuracy, budget=at, target=loop.target_accuracy,
                        rng=numpy_rng(self.config.seed, k, "forecast"))
        check = backtest(n, accuracy)
        return {"forecast": made.to_dict() if made else None,
                "forecast_check": None if check is None else {
                    "fitted_on": check.fitted_on, "n": list(check.n),
                    "predicted": [round(v, 4) for v in check.predicted],
                    "mean_abs_error": round(check.mean_abs_error, 4),
                    "max_abs_error": round(check.max_abs_error, 4)}}


def run_experiment(config: StarConfig, out: Path) -> dict[str, Any]:
    """Run (or resume) one strategy and seed into `out`; returns the results. The model goes
    with the run, and on a GPU so does the memory its caching allocator kept: `star compare`
    loads the next run's model into one process."""
    results = Experiment(config, out).run()
    if torch.cuda.is_available():
        gc.collect()  # the experiment's model, adapter and optimizer state are unreachable now
        torch.cuda.empty_cache()
    return results
