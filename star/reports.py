"""Tables from run folders: Table 1/2 (AUC, RIPL), calibration per round, selection insight.

Everything here reads what `star run` wrote (results.json, predictions.jsonl, scores.jsonl),
so it works on any set of runs. A `Table` renders itself as Markdown, HTML and CSV.
"""

from __future__ import annotations

import csv
import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from star.metrics import brier_score, expected_calibration_error, mean_std, ripl
from star.progress import log
from star.tasks import task_display_name

MAIN_STRATEGIES = ["random", "pe", "pe-star", "me", "me-star"]
ABLATION_STRATEGIES = ["pe", "pe+dynamic", "pe+dynamic+mc", "pe+dynamic+l2",
                       "me", "me+dynamic", "me+dynamic+mc", "me+dynamic+l2"]
STRATEGY_ORDER = ["random", "pe", "pe+dynamic", "pe+dynamic+mc", "pe+dynamic+l2", "pe-star",
                  "me", "me+dynamic", "me+dynamic+mc", "me+dynamic+l2", "me-star"]


def strategy_order(name: str) -> tuple[int, str]:
    return (STRATEGY_ORDER.index(name) if name in STRATEGY_ORDER else len(STRATEGY_ORDER), name)


@dataclass
class Cell:
    text: str
    value: float | str | None = None
    """What the CSV holds (the number without formatting)."""
    mark: str = ""
    """`best` (bold) or `second` (underlined)."""


@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str = ""

    def markdown(self) -> str:
        def show(cell: Cell) -> str:
            if cell.mark == "best":
                return f"**{cell.text}**"
            if cell.mark == "second":
                return f"<u>{cell.text}</u>"
            return cell.text

        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(show(c) for c in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        def show(cell: Cell) -> str:
            text = html.escape(cell.text)
            if cell.mark == "best":
                return f"<td><b>{text}</b></td>"
            if cell.mark == "second":
                return f"<td><u>{text}</u></td>"
            return f"<td>{text}</td>"

        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(show(c) for c in row) + "</tr>" for row in self.rows)
        note = f"<p class='note'>{html.escape(self.note)}</p>" if self.note else ""
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            for row in self.rows:
                writer.writerow([c.value if c.value is not None else c.text for c in row])


def collect_runs(root: Path) -> list[dict[str, Any]]:
    """Every finished run below `root` (folders holding results.json and config.yaml).

    A run stopped before its labeling budget is left out, with a line saying so: its AUC
    covers fewer rounds and would drag its strategy's mean.
    """
    runs = []
    for path in sorted(root.rglob("results.json")):
        results = json.loads(path.read_text())
        config = path.parent / "config.yaml"
        budget = yaml.safe_load(config.read_text())["loop"]["budget"] if config.exists() else 0
        labels = results["rounds"][-1]["n_labeled"] if results.get("rounds") else 0
        if labels < max(budget, 1):
            log(f"report: skipping unfinished run {path.parent} ({labels} of {budget} labels)")
            continue
        results["path"] = str(path.parent)
        results["task"] = task_display_name(results["task"])  # runs before titles: "obqa"
        runs.append(results)
    return runs


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{task: {strategy: {auc_mean, auc_std, ripl_mean, ripl_std, seeds, curve}}}.

    RIPL of a run is against the `random` run of the same task and seed; without one it is null.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["task"], run["strategy"])].append(run)
    random_auc = {(r["task"], r["seed"]): r["auc"] for r in runs if r["strategy"] == "random"}
    summary: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (task, strategy), group in sorted(groups.items(),
                                          key=lambda kv: (kv[0][0], strategy_order(kv[0][1]))):
        group.sort(key=lambda r: r["seed"])
        length = min(len(r["rounds"]) for r in group)
        accuracy = np.array([[x["accuracy"] for x in r["rounds"][:length]] for r in group])
        auc_mean, auc_std = mean_std([r["auc"] for r in group])
        ripls = [ripl(r["auc"], random_auc[(task, r["seed"])]) for r in group
                 if (task, r["seed"]) in random_auc]
        ripl_mean, ripl_std = mean_std(ripls) if ripls and strategy != "random" else (None, None)
        summary[task][strategy] = {
            "seeds": [r["seed"] for r in group], "auc_mean": auc_mean, "auc_std": auc_std,
            "ripl_mean": ripl_mean, "ripl_std": ripl_std,
            "curve": {"n_labeled": [x["n_labeled"] for x in group[0]["rounds"][:length]],
                      "accuracy_mean": accuracy.mean(axis=0).tolist(),
                      "accuracy_std": (accuracy.std(axis=0, ddof=1) if len(group) > 1
                                       else np.zeros(length)).tolist()}}
    return dict(summary)


def matched_seeds(runs: list[dict[str, Any]], strategies: list[str]) -> list[dict[str, Any]]:
    """The runs of `strategies` (and `random`, for RIPL) on the seeds every one of them has in
    that task, so rows compared in one table differ in the strategy only, not in the seeds."""
    seeds: dict[tuple[str, str], set[int]] = defaultdict(set)
    for run in runs:
        if run["strategy"] in strategies:
            seeds[(run["task"], run["strategy"])].add(run["seed"])
    common = {task: set.intersection(*[s for (t, _), s in seeds.items() if t == task])
              for task, _ in seeds}
    return [run for run in runs if run["task"] in common and run["seed"] in common[run["task"]]
            and (run["strategy"] in strategies or run["strategy"] == "random")]


def _marks(values: dict[str, float | None]) -> dict[str, str]:
    """Best and second-best as shown (two decimals of a percentage); ties share a mark."""
    shown = {key: round(100 * v, 2) for key, v in values.items() if v is not None}
    levels = sorted(set(shown.values()), reverse=True)[:2]
    return {key: ("best", "second")[levels.index(v)] for key, v in shown.items() if v in levels}


def results_table(summary: dict[str, dict[str, dict[str, Any]]], strategies: list[str] | None = None,
                  name: str = "table1", title: str = "AUC and RIPL per strategy") -> Table:
    """Table 1/2 layout: a row per strategy, AUC and RIPL (%) per task, mean ± std over seeds."""
    tasks = sorted(t for t in summary if strategies is None or set(summary[t]) & set(strategies))
    present = sorted({s for t in tasks for s in summary[t]}, key=strategy_order)
    rows_for = sorted((s for s in (strategies or present) if s in present), key=strategy_order)
    columns = ["Method"] + [f"{t} {metric}" for t in tasks for metric in ("AUC", "RIPL")]
    marks = {(t, m): _marks({s: summary[t][s][f"{m}_mean"] for s in rows_for if s in summary[t]})
             for t in tasks for m in ("auc", "ripl")}
    table = Table(name, title, columns)
    for strategy in rows_for:
        row = [Cell(strategy)]
        for task in tasks:
            entry = summary[task].get(strategy)
            for metric in ("auc", "ripl"):
                mean = entry[f"{metric}_mean"] if entry else None
                if mean is None:
                    row.append(Cell("–"))
                    continue
                std = entry[f"{metric}_std"]
                row.append(Cell(f"{100 * mean:.2f} ± {100 * std:.2f}", round(100 * mean, 4),
                                marks[(task, metric)].get(strategy, "")))
        table.rows.append(row)
    seeds = sorted({len(summary[t][s]["seeds"]) for t in tasks for s in rows_for if s in summary[t]})
    table.note = (f"AUC and RIPL in %, mean ± std over {'/'.join(map(str, seeds))} seed(s); "
                  "best bold, second underlined; RIPL against random with the same seed.")
    return table


def table_markdown(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    return results_table(summary).markdown()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def calibration_rows(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Per (task, strategy): per round, ECE and Brier averaged over seeds."""
    per_round: dict[tuple[str, str, int], list[tuple[float, float, float, int]]] = defaultdict(list)
    for run in runs:
        for entry in run["rounds"]:
            path = Path(run["path"]) / "rounds" / str(entry["round"]) / "predictions.jsonl"
            if not path.exists():
                continue
            predictions = read_jsonl(path)
            confidence = [p["confidence"] for p in predictions]
            correct = [p["correct"] for p in predictions]
            per_round[(run["task"], run["strategy"], entry["round"])].append(
                (expected_calibration_error(confidence, correct), brier_score(confidence, correct),
                 entry["accuracy"], entry["n_labeled"]))
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (task, strategy, k), values in sorted(per_round.items()):
        ece, brier, accuracy, n = np.array(values).T
        rows[(task, strategy)].append({"round": k, "n_labeled": int(n[0]), "seeds": len(values),
                                       "accuracy": accuracy.mean(), "ece": ece.mean(),
                                       "ece_std": ece.std(), "brier": brier.mean()})
    return dict(rows)


def calibration_tables(rows: dict[tuple[str, str], list[dict[str, Any]]]) -> list[Table]:
    """ECE and Brier per round, one row per task and strategy, one column per label count."""
    labels = sorted({r["n_labeled"] for values in rows.values() for r in values})
    keys = sorted(rows, key=lambda k: (k[0], strategy_order(k[1])))
    tables = []
    for name, title, show in (
            ("calibration_ece", "Expected calibration error (%) per round, mean ± std over seeds",
             lambda r: Cell(f"{100 * r['ece']:.1f} ± {100 * r['ece_std']:.1f}",
                            round(100 * r["ece"], 3))),
            ("calibration_brier", "Brier score per round, mean over seeds",
             lambda r: Cell(f"{r['brier']:.3f}", round(r["brier"], 5)))):
        table = Table(name, title, ["Task", "Method", "Seeds", *[f"{n} labels" for n in labels]])
        for task, strategy in keys:
            by_labels = {r["n_labeled"]: r for r in rows[(task, strategy)]}
            seeds = max(r["seeds"] for r in by_labels.values())
            table.rows.append([Cell(task), Cell(strategy), Cell(str(seeds), seeds),
                               *[show(by_labels[n]) if n in by_labels else Cell("–")
                                 for n in labels]])
        tables.append(table)
    tables[0].note = "15 equal-width confidence bins over the test predictions of each run."
    tables[1].note = "Top-label Brier score: squared gap between confidence and correctness."
    return tables


def _top(ids: list[str], values: np.ndarray, k: int) -> set[str]:
    return {ids[i] for i in np.argsort(-values, kind="stable")[:k]}


def selection_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For runs that record μ_b and μ_f: per round, their pool means, λ(t) and top-set overlaps."""
    rows = []
    for run in runs:
        for entry in run["rounds"][1:]:
            path = Path(run["path"]) / "rounds" / str(entry["round"]) / "scores.jsonl"
            if not path.exists():
                continue
            scores = read_jsonl(path)
            if not scores or "base" not in scores[0] or "full" not in scores[0]:
                continue
            ids = [s["id"] for s in scores]
            base = np.array([s["base"] for s in scores])
            full = np.array([s["full"] for s in scores])
            mixed = np.array([s["score"] for s in scores])
            k = sum(s["selected"] for s in scores)
            top_b, top_f, top_m = _top(ids, base, k), _top(ids, full, k), _top(ids, mixed, k)
            rows.append({
                "task": run["task"], "strategy": run["strategy"], "seed": run["seed"],
                "round": entry["round"], "lambda": run.get("lambda", {}).get(str(entry["round"])),
                "base_mean": float(base.mean()), "full_mean": float(full.mean()),
                "pearson_base_full": float(np.corrcoef(base, full)[0, 1]),
                "overlap_base_full": len(top_b & top_f) / k,
                "overlap_base_mixed": len(top_b & top_m) / k,
                "overlap_full_mixed": len(top_f & top_m) / k})
    return rows


def selection_table(rows: list[dict[str, Any]]) -> Table:
    """Seed-averaged selection insight per task, strategy and round."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["strategy"], row["round"])].append(row)
    table = Table("selection", "What the dynamic score selected",
                  ["Task", "Method", "Round", "λ(t)", "mean μ_b", "mean μ_f", "r(μ_b, μ_f)",
                   "top-k base∩full", "base∩mixed", "full∩mixed"])
    for (task, strategy, k) in sorted(groups, key=lambda g: (g[0], strategy_order(g[1]), g[2])):
        group = groups[(task, strategy, k)]

        def avg(key: str, rows: list[dict[str, Any]] = group) -> float:
            return float(np.mean([r[key] for r in rows]))

        weight = group[0]["lambda"]
        table.rows.append([
            Cell(task), Cell(strategy), Cell(str(k), k),
            Cell("–" if weight is None else f"{weight:.2f}", weight),
            Cell(f"{avg('base_mean'):.3f}", avg("base_mean")),
            Cell(f"{avg('full_mean'):.3f}", avg("full_mean")),
            Cell(f"{avg('pearson_base_full'):.2f}", avg("pearson_base_full")),
            *[Cell(f"{100 * avg(key):.0f} %", avg(key)) for key in
              ("overlap_base_full", "overlap_base_mixed", "overlap_full_mixed")]])
    table.note = ("Means over the unlabeled pool before the round's selection, averaged over seeds; "
                  "overlaps are between the top-k sets (k = labels taken that round) ranked by "
                  "μ_b alone, μ_f alone and the mixed score.")
    return table


def write_comparison(root: Path) -> str:
    """summary.json, table.md and learning_curves.png for the runs below `root`; the table."""
    from star.figures import plot_learning_curves

    summary = summarize(collect_runs(root))
    (root / "summary.json").write_text(json.dumps(summary, indent=1))
    table = table_markdown(summary)
    (root / "table.md").write_text(table)
    plot_learning_curves(summary, root / "learning_curves.png")
    return table
