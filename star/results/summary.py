"""Summaries of run folders: AUC and RIPL per setup and strategy, calibration per round, what
the dynamic score selected, and the labels. Everything here reads what `star run` wrote,
through `RunFolder`, so it works on any set of runs; `tables.py` renders the summaries."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from star.active.classes import batch_against_pool
from star.active.journal import annotator_agreement
from star.active.learning_curve import auc
from star.active.refit import kept_fits, of_one_class
from star.active.runfolder import RunFolder, complete_rounds, find_runs
from star.active.strategies import display_order, select_top
from star.data.tasks import task_display_name
from star.errors import DataError
from star.progress import log
from star.results.metrics import brier_score, expected_calibration_error, mean_std, ripl
from star.results.savings import (
    Z95,
    binomial_se,
    bootstrap_interval,
    deficiency,
    labels_saved,
    pooled_sd,
)
from star.results.setups import (
    fold_switches,
    name_setups,
    refuse_duplicates,
    settle_picking_keys,
    setup_key,
)
from star.results.significance import detectable_difference, paired
from star.seeding import numpy_rng


def collect_runs(root: Path, switches: list[str] | None = None) -> list[dict[str, Any]]:
    """Every finished run below `root` (folders holding results.json and config.yaml), each
    with its setup (see `setups.py`); the config keys in `switches` are compared as if they
    were strategies (`fold_switches`); a run that picks without the model joins the runs
    that pick with it whichever model they pick with (`settle_picking_keys`).

    A run stopped before its labeling budget is left out, with a line saying so: its AUC
    covers fewer rounds and would drag its strategy's mean. A run without a test set has no
    AUC to drag; it stays once it has a round, so the labels of a run still being labeled
    show. Two runs of one setup, strategy and seed are refused (`DataError`).
    """
    runs = []
    for folder in find_runs(root):
        results = folder.read_results()
        config = folder.read_config() or {}
        budget = config.get("loop", {}).get("budget", 0)
        rounds = complete_rounds(results)
        labels = rounds[-1]["n_labeled"] if rounds else 0
        if not rounds or (results.get("auc") is not None and labels < budget):
            log(f"report: skipping unfinished run {folder.root} ({labels} of {budget} labels)")
            continue
        results["path"] = str(folder.root)
        results["config"] = config
        results["task"] = task_display_name(results["task"])  # runs before titles: "obqa"
        runs.append(results)
    settle_picking_keys(runs)
    fold_switches(runs, switches or [])
    name_setups(runs)
    refuse_duplicates(runs)
    return runs


def scored(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs with an accuracy curve (a test set): the only ones AUC, RIPL, learning curves
    and calibration can speak of."""
    return [run for run in runs if run.get("auc") is not None]


BASELINES = ("chance", "majority", "zero_shot")
"""What a run records before any training (results.json `baselines`)."""


def metric_auc(run: dict[str, Any], metric: str) -> float:
    """A run's AUC on `metric` (a key of its rounds): the one it recorded for accuracy, else
    computed the same way from its rounds."""
    if metric == "accuracy":
        return run["auc"]
    rounds = complete_rounds(run)
    return auc([r["n_labeled"] for r in rounds], [r[metric] for r in rounds])


def refuse_missing(runs: list[dict[str, Any]], metric: str) -> None:
    """A `DataError` naming the runs with a round that lacks `metric`: a curve on it would
    compare them with others on another footing."""
    lacking = [run["path"] for run in runs
               if any(r.get(metric) is None for r in complete_rounds(run))]
    if lacking:
        raise DataError(f"no {metric} in every round of {len(lacking)} run(s) (runs from before "
                        f"STAR recorded it, or generative tasks): {', '.join(lacking)}; leave "
                        "them out, or report on accuracy")


def summarize(runs: list[dict[str, Any]],
              metric: str = "accuracy") -> dict[str, dict[str, dict[str, Any]]]:
    """{setup: {strategy: {task, setup, metric, seeds, auc_per_seed, auc_mean, auc_std,
    ripl_per_seed, ripl_mean, ripl_std, baselines_per_seed, gain_per_seed, gain_mean, gain_std,
    ece_last_per_seed, final_per_seed, curve, vs_random}}} over the runs with a test set.
    `ece_last` is the ECE, and `final` the metric, of the last round all the strategy's seeds
    reached. `gain` is AUC minus the zero-shot
    accuracy: what fine-tuning bought over not fine-tuning at all. The curve starts at 0 labels
    with the zero-shot point. `vs_random` is the AUC difference to random paired by seed (see
    `significance.paired`).

    `metric` (see `classes.CURVE_METRICS`) is what the curve (`<metric>_mean`, `<metric>_std`),
    AUC and RIPL are of; every run must have it in every round (`refuse_missing`). The baselines,
    the zero-shot point and the gain are accuracies, so only an accuracy summary has them.

    `setup` holds the config keys that set the setup apart from the other setups of its task.
    RIPL of a run is against the `random` run of the same setup and seed; without one it is null.
    `savings` (where random ran on some seed of the setup): labels saved and the deficiency
    against random on `metric`, per seed and over seeds (see `savings_of`).
    """
    runs = scored(runs)
    refuse_missing(runs, metric)
    runs = [{**run, "auc": metric_auc(run, metric)} for run in runs]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["setup"], run["strategy"])].append(run)
    random_auc = {(r["setup"], r["seed"]): r["auc"] for r in runs if r["strategy"] == "random"}
    summary: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (setup, strategy), group in sorted(groups.items(),
                                           key=lambda kv: (kv[0][0], display_order(kv[0][1]))):
        group.sort(key=lambda r: r["seed"])
        length = min(len(complete_rounds(r)) for r in group)
        values = np.array([[x[metric] for x in complete_rounds(r)[:length]] for r in group])
        aucs = [r["auc"] for r in group]
        auc_mean, auc_std = mean_std(aucs)
        ripls = [ripl(r["auc"], random_auc[(setup, r["seed"])])
                 if strategy != "random" and (setup, r["seed"]) in random_auc else None
                 for r in group]
        known = [value for value in ripls if value is not None]
        ripl_mean, ripl_std = mean_std(known) if known else (None, None)
        recorded = [(r.get("baselines") or {}) if metric == "accuracy" else {} for r in group]
        baselines = {name: [levels.get(name) for levels in recorded] for name in BASELINES}
        zero_shot = baselines["zero_shot"]
        gains = [None if z is None else a - z for a, z in zip(aucs, zero_shot, strict=True)]
        gain_mean, gain_std = mean_std(gains) if None not in gains else (None, None)
        n_labeled = [x["n_labeled"] for x in complete_rounds(group[0])[:length]]
        last_ece = [calibration_at(r, complete_rounds(r)[length - 1]) for r in group]
        if None not in zero_shot:  # the curve starts at the base model, before any label
            n_labeled = [0, *n_labeled]
            values = np.column_stack([zero_shot, values])
        summary[setup][strategy] = {
            "task": group[0]["task"], "setup": group[0]["setup_keys"], "metric": metric,
            "seeds": [r["seed"] for r in group], "auc_per_seed": aucs,
            "auc_mean": auc_mean, "auc_std": auc_std,
            "ripl_per_seed": ripls, "ripl_mean": ripl_mean, "ripl_std": ripl_std,
            "baselines_per_seed": baselines,
            "gain_per_seed": gains, "gain_mean": gain_mean, "gain_std": gain_std,
            "ece_last_per_seed": [None if c is None else c[0] for c in last_ece],
            "final_per_seed": values[:, -1].tolist(),
            "curve": {"n_labeled": n_labeled,
                      f"{metric}_mean": values.mean(axis=0).tolist(),
                      f"{metric}_std": (values.std(axis=0, ddof=1) if len(group) > 1
                                        else np.zeros(values.shape[1])).tolist()}}
    for entries in summary.values():
        random = entries.get("random")
        for strategy, entry in entries.items():
            against = None
            if random is not None and strategy != "random":
                against = paired(per_seed(entry, "auc"), per_seed(random, "auc"))
            entry["vs_random"] = against.to_dict() if against else None
    for (setup, strategy), savings in savings_of(runs, metric).items():
        summary[setup][strategy]["savings"] = savings
    return dict(summary)


def per_seed(entry: dict[str, Any], metric: str) -> dict[int, float]:
    """seed -> value of a summary entry's `<metric>_per_seed` (values that exist)."""
    return {seed: value for seed, value in zip(entry["seeds"], entry[f"{metric}_per_seed"],
                                               strict=True) if value is not None}


def curve_of(run: dict[str, Any], metric: str = "accuracy") -> tuple[list[int], list[float]]:
    """A run's learning curve: labels and `metric` of its complete rounds with a test set."""
    rounds = [r for r in complete_rounds(run) if r.get(metric) is not None]
    return [r["n_labeled"] for r in rounds], [r[metric] for r in rounds]


def savings_of(runs: list[dict[str, Any]], metric: str = "accuracy"
               ) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (setup, strategy), over the seeds random ran too, on `metric`'s curves: per seed,
    random's final value (`target`), its first (`random_start`) and its budget, the labels
    needed to reach the target (null: not reached), the labels saved, the saving beyond
    random's own (`beyond_random`: the strategy's saving minus random's on the same seed, what
    the first crossing credits a bumpy curve by chance taken out), the deficiency and its
    reference (the best value of any run of the setup and seed); then the mean and 95 %
    bootstrap interval of those over the seeds, how many seeds did not reach random's final
    value, and on how many random ended at or below its first round (`random_fell`: there the
    target is met before random's labels bought anything, and a saving only says the strategy
    did not fall as far). See `savings.py` for how they count."""
    curves = {(r["setup"], r["strategy"], r["seed"]): curve_of(r, metric) for r in scored(runs)}
    best: dict[tuple[str, int], float] = defaultdict(float)
    for (setup, _, seed), (_, values) in curves.items():
        best[(setup, seed)] = max(best[(setup, seed)], *values)
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (setup, strategy, seed), (n, values) in sorted(curves.items()):
        random = curves.get((setup, "random", seed))
        if random is None:
            continue
        saving = labels_saved(n, values, *random)
        rows[(setup, strategy)].append({
            "seed": seed, "target": random[1][-1], "random_start": random[1][0],
            "budget": random[0][-1], "needed": saving.needed, "saved": saving.saved,
            "reached": saving.reached,
            "beyond_random": saving.saved - labels_saved(*random, *random).saved,
            "reference": best[(setup, seed)],
            "deficiency": deficiency(n, values, *random, best[(setup, seed)])})
    return {key: {"metric": metric, "per_seed": seeds,
                  "labels_saved": {**_over_seeds([s["saved"] for s in seeds]),
                                   "not_reached": sum(not s["reached"] for s in seeds),
                                   "random_fell": sum(s["target"] <= s["random_start"]
                                                      for s in seeds)},
                  "beyond_random": (_over_seeds([s["beyond_random"] for s in seeds])
                                    if key[1] != "random" else None),
                  "deficiency": _over_seeds([s["deficiency"] for s in seeds
                                             if s["deficiency"] is not None])}
            for key, seeds in rows.items()}


def _over_seeds(values: list[float]) -> dict[str, Any]:
    """Mean, 95 % bootstrap interval and count of per-seed values; the resampling generator is
    fixed, so the same runs give the same interval."""
    if not values:
        return {"mean": None, "low": None, "high": None, "seeds": 0}
    low, high = bootstrap_interval(values, numpy_rng(0, 0, "bootstrap")) or (None, None)
    return {"mean": float(np.mean(values)), "low": low, "high": high, "seeds": len(values)}


PLANNED_SEEDS = 10
"""The seed count of a comparison that backs a claim: what it could detect is shown too."""


def noise_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setup and label count: the mean accuracy of its runs; the test set's binomial
    standard error at that accuracy and its 95 % half-width (what another test set of the same
    size alone would move); the spread between seeds (sample SD within each strategy, pooled
    over the strategies); and, where `star noise` retrained the round, the spread between
    training seeds on the same labels (pooled over those runs)."""
    accuracies: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    retrained: dict[tuple[str, int], list[list[float]]] = defaultdict(list)
    runs = scored(runs)
    for run in runs:
        folder = RunFolder(Path(run["path"]))
        for entry in complete_rounds(run):
            if entry.get("accuracy") is None:
                continue
            key = (run["setup"], entry["n_labeled"])
            accuracies[key][run["strategy"]].append(entry["accuracy"])
            noise = folder.read_noise(entry["round"])
            if noise and noise["retrains"]:
                retrained[key].append([r["accuracy"] for r in noise["retrains"]])
    tasks = {run["setup"]: run["task"] for run in runs}
    sizes = {run["setup"]: run.get("test_size") for run in runs}
    rows = []
    for (setup, n), groups in sorted(accuracies.items()):
        mean = float(np.mean([a for group in groups.values() for a in group]))
        se = binomial_se(mean, sizes[setup]) if sizes[setup] else None
        rows.append({"task": tasks[setup], "setup": setup, "n_labeled": n, "accuracy": mean,
                     "test_size": sizes[setup], "test_se": se,
                     "test_half_width": None if se is None else Z95 * se,
                     "seeds": max(len(group) for group in groups.values()),
                     "seed_sd": pooled_sd(list(groups.values())),
                     "train_runs": len(retrained[(setup, n)]),
                     "train_sd": pooled_sd(retrained[(setup, n)])})
    return rows


def detectable_rows(summary: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per setup where strategies were paired with random on two or more seeds: the spread of
    the per-seed AUC differences (pooled over the strategies) and the smallest true difference a
    paired t-test detects at 80 % power with that many seeds, and with `PLANNED_SEEDS`."""
    rows = []
    for setup, entries in sorted(summary.items()):
        differences = [e["vs_random"]["differences"] for e in entries.values() if e.get("vs_random")]
        spread = pooled_sd(differences)
        if spread is None:
            continue
        seeds = max(len(d) for d in differences)
        rows.append({"task": next(iter(entries.values()))["task"], "setup": setup,
                     "seeds": seeds, "difference_sd": spread,
                     "detectable": detectable_difference(spread, seeds),
                     "detectable_planned": detectable_difference(spread, PLANNED_SEEDS)})
    return rows


def baseline_levels(entries: dict[str, dict[str, Any]]) -> dict[str, dict[int, float]]:
    """{baseline: {seed: accuracy}} of one setup, from its strategies' entries: chance, the
    test set's majority class and the zero-shot base model, per seed (the test subsample
    is drawn per seed)."""
    levels: dict[str, dict[int, float]] = {name: {} for name in BASELINES}
    for entry in entries.values():
        for name, values in entry.get("baselines_per_seed", {}).items():
            for seed, value in zip(entry["seeds"], values, strict=True):
                if value is not None:
                    levels[name][seed] = value
    return levels


def matched_seeds(runs: list[dict[str, Any]], strategies: list[str]) -> list[dict[str, Any]]:
    """The runs of `strategies` (and `random`, for RIPL) on the seeds every one of them has in
    that setup, so rows compared in one table differ in the strategy only, not in the seeds."""
    seeds: dict[tuple[tuple[str, str], str], set[int]] = defaultdict(set)
    for run in runs:
        if run["strategy"] in strategies:
            seeds[(setup_key(run), run["strategy"])].add(run["seed"])
    common = {setup: set.intersection(*[s for (other, _), s in seeds.items() if other == setup])
              for setup, _ in seeds}
    return [run for run in runs if setup_key(run) in common
            and run["seed"] in common[setup_key(run)]
            and (run["strategy"] in strategies or run["strategy"] == "random")]


def calibration_at(run: dict[str, Any], entry: dict[str, Any]) -> tuple[float, float] | None:
    """(ECE, Brier) of a round's test predictions; None for a round without a test set or
    without its predictions file."""
    if entry.get("accuracy") is None:
        return None
    predictions = RunFolder(Path(run["path"])).read_predictions(entry["round"])
    if predictions is None:
        return None
    confidence = [p["confidence"] for p in predictions]
    correct = [p["correct"] for p in predictions]
    return expected_calibration_error(confidence, correct), brier_score(confidence, correct)


def calibration_rows(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Per (setup, strategy): per round, ECE and Brier averaged over seeds (rounds evaluated on
    a test set only: without one, predictions have nothing to be right about)."""
    per_round: dict[tuple[str, str, int], list[tuple[float, float, float, int]]] = defaultdict(list)
    tasks = {run["setup"]: run["task"] for run in runs}
    for run in runs:
        for entry in complete_rounds(run):
            calibration = calibration_at(run, entry)
            if calibration is not None:
                per_round[(run["setup"], run["strategy"], entry["round"])].append(
                    (*calibration, entry["accuracy"], entry["n_labeled"]))
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (setup, strategy, k), values in sorted(per_round.items()):
        ece, brier, accuracy, n = np.array(values).T
        ece_mean, ece_std = mean_std(ece)  # the sample std, as for AUC
        brier_mean, brier_std = mean_std(brier)
        rows[(setup, strategy)].append({"task": tasks[setup], "round": k, "n_labeled": int(n[0]),
                                        "seeds": len(values), "accuracy": accuracy.mean(),
                                        "ece": ece_mean, "ece_std": ece_std,
                                        "brier": brier_mean, "brier_std": brier_std})
    return dict(rows)


def _top(ids: list[str], values: np.ndarray, k: int) -> set[str]:
    """The ids of the k highest values, ties broken as the loop's selection breaks them."""
    return {ids[i] for i in select_top(values, k)}


def selection_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For runs that record μ_b and μ_f: per round, their pool means, λ(t), top-set overlaps
    and, with MC dropout, how much the passes agree (see `_mc_effect`)."""
    rows = []
    for run in runs:
        for entry in complete_rounds(run)[1:]:
            folder = RunFolder(Path(run["path"]))
            if not folder.scores_path(entry["round"]).exists():
                continue
            scores = folder.read_scores(entry["round"])
            if not scores or "base" not in scores[0] or "full" not in scores[0]:
                continue
            ids = [s["id"] for s in scores]
            base = np.array([s["base"] for s in scores])
            full = np.array([s["full"] for s in scores])
            mixed = np.array([s["score"] for s in scores])
            k = sum(s["selected"] for s in scores)
            top_b, top_f, top_m = _top(ids, base, k), _top(ids, full, k), _top(ids, mixed, k)
            rows.append({
                "task": run["task"], "setup": run["setup"], "strategy": run["strategy"],
                "seed": run["seed"],
                "round": entry["round"], "lambda": run.get("lambda", {}).get(str(entry["round"])),
                "base_mean": float(base.mean()), "full_mean": float(full.mean()),
                "pearson_base_full": float(np.corrcoef(base, full)[0, 1]),
                "overlap_base_full": len(top_b & top_f) / k,
                "overlap_base_mixed": len(top_b & top_m) / k,
                "overlap_full_mixed": len(top_f & top_m) / k,
                **_mc_effect(ids, np.array([s["passes"] for s in scores]).T, top_f, k)})
    return rows


def _mc_effect(ids: list[str], passes: np.ndarray, top_f: set[str], k: int
               ) -> dict[str, float | None]:
    """How much K MC-dropout passes ([passes, examples]) agree: their mean pairwise
    correlation, and the share of μ_f's top k (ranked by the mean of the K passes) that one
    pass alone would also rank there. None for a single pass (or passes without spread)."""
    r = np.corrcoef(passes)[np.triu_indices(len(passes), 1)] if len(passes) > 1 else []
    if not len(r) or not np.isfinite(r).all():
        return {"mc_pass_r": None, "overlap_pass_mean": None}
    return {"mc_pass_r": float(np.mean(r)),
            "overlap_pass_mean": len(_top(ids, passes[0], k) & top_f) / k}


def label_records(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run whose rounds count their labels: those rounds (label counts, agreement of the
    predictions with the last round's), the stopping signal and the annotators' agreement.
    What someone labeling needs to judge the labels and when to stop, test set or not."""
    records = []
    for run in sorted(runs, key=lambda r: (r["setup"], display_order(r["strategy"]), r["seed"])):
        rounds = [entry for entry in complete_rounds(run) if "label_counts" in entry]
        if rounds:
            records.append({"task": run["task"], "setup": run["setup"], "strategy": run["strategy"],
                            "seed": run["seed"], "entries": rounds,
                            "stop_advised": bool((run.get("stopping") or {}).get("stop_advised")),
                            "annotators": annotator_agreement(
                                RunFolder(Path(run["path"])).journal)})
    return records


def _mean(values: list[float | None]) -> float | None:
    """The mean of the values that exist; None without any."""
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def _by_strategy(keyed: dict[tuple[str, str], Any]) -> list[tuple[tuple[str, str], Any]]:
    """(setup, strategy) groups in the order of the tables: by setup, then strategy."""
    return sorted(keyed.items(), key=lambda kv: (kv[0][0], display_order(kv[0][1])))


def class_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setup and strategy whose last round records per-class numbers: that round's accuracy,
    balanced accuracy, macro-F1 and each class's recall, averaged over the seeds (a class the
    test set lacks has no recall and stays out of its mean)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    tasks = {run["setup"]: run["task"] for run in runs}
    for run in scored(runs):
        last = complete_rounds(run)[-1]
        if last.get("class_recall") is not None:
            groups[(run["setup"], run["strategy"])].append(last)
    rows = []
    for (setup, strategy), lasts in _by_strategy(groups):
        labels = sorted({label for last in lasts for label in last["class_recall"]})
        rows.append({"task": tasks[setup], "setup": setup, "strategy": strategy,
                     "seeds": len(lasts), "n_labeled": lasts[0]["n_labeled"],
                     **{key: _mean([last[key] for last in lasts])
                        for key in ("accuracy", "balanced_accuracy", "macro_f1")},
                     "class_recall": {label: _mean([last["class_recall"].get(label)
                                                    for last in lasts]) for label in labels}})
    return rows


def batch_shares(rounds: list[dict[str, Any]]) -> dict[str, tuple[float, float | None]]:
    """label -> (its share of these rounds' batches, its share of the unlabeled pools they were
    chosen from), each round weighted by its batch size: the second is what random selection
    would have taken on average. None for the pool without its labels (people)."""
    sizes = [sum(r["batch_label_counts"].values()) for r in rounds]
    shares = [batch_against_pool(r["batch_label_counts"], r.get("pool_label_counts"))
              for r in rounds]
    labels = sorted({label for s in shares for label in s})

    def weighted(label: str, which: int) -> float | None:
        values = [s.get(label, (0.0, 0.0))[which] for s in shares]
        return None if None in values else float(np.average(values, weights=sizes))

    return {label: (weighted(label, 0) or 0.0, weighted(label, 1)) for label in labels}


def batch_label_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setup and strategy whose rounds record their batches' labels: `batch_shares` of the
    rounds the strategy chose (round 0, the warm start, left out), averaged over the seeds."""
    groups: dict[tuple[str, str], list[dict[str, tuple[float, float | None]]]] = defaultdict(list)
    tasks = {run["setup"]: run["task"] for run in runs}
    for run in runs:
        rounds = [r for r in complete_rounds(run)[1:] if r.get("batch_label_counts")]
        if rounds:
            groups[(run["setup"], run["strategy"])].append(batch_shares(rounds))
    rows = []
    for (setup, strategy), runs_shares in _by_strategy(groups):
        labels = sorted({label for shares in runs_shares for label in shares})
        rows.append({"task": tasks[setup], "setup": setup, "strategy": strategy,
                     "seeds": len(runs_shares),
                     "shares": {label: tuple(_mean([s.get(label, (0.0, 0.0))[which]
                                                    for s in runs_shares]) for which in (0, 1))
                                for label in labels}})
    return rows


def _round_records(runs: list[dict[str, Any]], key: str
                   ) -> dict[tuple[str, str], dict[int, list[dict[str, Any]]]]:
    """The `key` record of every complete round that has one, by (setup, strategy), then by
    label count: one list per cell of a per-round table, a record per seed."""
    groups: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list))
    for run in runs:
        for entry in complete_rounds(run):
            if entry.get(key):
                groups[(run["setup"], run["strategy"])][entry["n_labeled"]].append(entry[key])
    return groups


def guard_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setup, strategy and label count where the prompt guard checked a round: how many
    seeds it checked, in how many it handed out the base model, in how many of those because a
    class had too few labels to check the recipe, and the mean of the evidence (the tuned
    recipe's held-out accuracy where it was checked and the base model's, on the labels so far)."""
    groups = _round_records(runs, "guard")
    return [{"setup": setup, "strategy": strategy, "n_labeled": n, "seeds": len(checks),
             "base_chosen": sum(check["chosen"] == "base" for check in checks),
             "unchecked": sum(check["tuned_cv"] is None for check in checks),
             "metric": checks[0]["metric"],
             "tuned_cv": _mean([check["tuned_cv"] for check in checks]),
             "base": _mean([check["base"] for check in checks])}
            for (setup, strategy), by_count in _by_strategy(groups)
            for n, checks in sorted(by_count.items())]


def fit_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setup and strategy whose rounds checked their adapter's fit (`train.retries`): how
    many rounds were checked, how many trained again, how many draws that took in all, in how
    many rounds no draw fitted its labels as well as the base model (which was handed out
    instead), and how many of those held labels of one class (`train.beat_chance`)."""
    groups = _round_records(runs, "fit")
    rows = []
    for (setup, strategy), by_count in _by_strategy(groups):
        checks = [check for n in sorted(by_count) for check in by_count[n]]
        rows.append({"setup": setup, "strategy": strategy, "checked": len(checks),
                     "retried": sum(len(check["draws"]) > 1 for check in checks),
                     "draws": sum(len(check["draws"]) for check in checks),
                     "unfitted": sum(not kept_fits(check) for check in checks),
                     "one_class": sum(of_one_class(check) for check in checks),
                     "labels": sorted({n for n, found in by_count.items()
                                       if any(len(check["draws"]) > 1 for check in found)})})
    return rows


def bandit_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setup, strategy and label count where the bandit (`auto`) drew a round's batch: how
    many seeds it drew, each arm's share of the draw (the probabilities the batch was drawn
    with, mean over the seeds), each arm's share of the picks it actually took (pooled over the
    seeds) and the mean reward. The shares show which strategies the bandit came to trust; the
    picks, what that trust bought in a batch of a few draws. Arms in first-seen order."""
    rows = []
    for (setup, strategy), by_count in _by_strategy(_round_records(runs, "bandit")):
        for n, records in sorted(by_count.items()):
            arms = list(dict.fromkeys(arm for record in records for arm in record["arms"]))
            shares = [dict(zip(record["arms"], record["probabilities"], strict=True))
                      for record in records]
            picked = [pick["arm"] for record in records for pick in record["picks"]]
            rows.append({"setup": setup, "strategy": strategy, "n_labeled": n,
                         "seeds": len(records), "arms": arms,
                         "drawn_with": {arm: _mean([s.get(arm) for s in shares]) for arm in arms},
                         "picks": {arm: picked.count(arm) / len(picked) for arm in arms},
                         "reward": _mean([record["reward"] for record in records])})
    return rows


def prompt_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setup, strategy and label count: the test accuracy minus the same seed's zero-shot
    accuracy, paired by seed (`significance.paired`), and how many seeds fell below it. Did
    the labels buy a model better than the untrained prompt at that budget?"""
    from star.results.significance import paired

    groups: dict[tuple[str, str], dict[int, tuple[dict[int, float], dict[int, float]]]] = \
        defaultdict(lambda: defaultdict(lambda: ({}, {})))
    for run in runs:
        zero_shot = (run.get("baselines") or {}).get("zero_shot")
        if zero_shot is None:
            continue
        for entry in complete_rounds(run):
            if entry.get("accuracy") is not None:
                tuned, prompt = groups[(run["setup"], run["strategy"])][entry["n_labeled"]]
                tuned[run["seed"]], prompt[run["seed"]] = entry["accuracy"], zero_shot
    rows = []
    for (setup, strategy), by_count in _by_strategy(groups):
        for n, (tuned, prompt) in sorted(by_count.items()):
            comparison = paired(tuned, prompt)
            rows.append({"setup": setup, "strategy": strategy, "n_labeled": n,
                         "accuracy": _mean(list(tuned.values())), "comparison": comparison,
                         "below": sum(tuned[seed] < prompt[seed] for seed in tuned)})
    return rows
