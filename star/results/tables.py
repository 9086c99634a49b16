"""Tables of summaries: Table 1/2 (AUC, RIPL), calibration per round, selection insight, labels.

A `Table` renders itself as Markdown, HTML and CSV, so the report, the comparison summary and
the CSV files show the same cells.
"""

from __future__ import annotations

import csv
import html
import io
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from star.active.classes import CURVE_METRICS
from star.active.runfolder import complete_rounds
from star.active.stopping import STOP_KAPPA, STOP_WINDOW
from star.active.strategies import display_order
from star.files import write_text_atomic
from star.results.metrics import mean_std
from star.results.significance import paired
from star.results.summary import BASELINES, PLANNED_SEEDS, baseline_levels, per_seed

FOLD_ROWS = 30
"""Tables with more rows than this are folded (`<details>`) in the report."""


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

    def markdown(self, fold: bool = False) -> str:
        """`fold`: a table longer than FOLD_ROWS is folded (`<details>`), as in the report, so
        that a table with a row per run and round leaves the sections after it in reach."""
        def show(cell: Cell) -> str:
            if cell.mark == "best":
                return f"**{cell.text}**"
            if cell.mark == "second":
                return f"<u>{cell.text}</u>"
            return cell.text

        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(show(c) for c in row) + " |" for row in self.rows]
        if fold and (summary := self._fold_summary()):
            lines = [f"<details><summary>{summary}</summary>", "", *lines, "", "</details>"]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """Folded like `markdown(fold=True)`."""
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
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        if summary := self._fold_summary():
            table = f"<details><summary>{html.escape(summary)}</summary>{table}</details>"
        return table + note

    def _fold_summary(self) -> str | None:
        """The line a folded table shows in its place; None for a table short enough to show."""
        if len(self.rows) <= FOLD_ROWS:
            return None
        return f"{len(self.rows)} rows: show them (or read {self.name}.csv)"

    def write_csv(self, path: Path) -> None:
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow([c.value if c.value is not None else c.text for c in row])
        write_text_atomic(path, text.getvalue())


def _marks(values: dict[str, float | None]) -> dict[str, str]:
    """Best and second-best as shown (two decimals of a percentage); ties share a mark."""
    shown = {key: round(100 * v, 2) for key, v in values.items() if v is not None}
    levels = sorted(set(shown.values()), reverse=True)[:2]
    return {key: ("best", "second")[levels.index(v)] for key, v in shown.items() if v in levels}


@dataclass(frozen=True)
class SetupGroup:
    """Setups shown in one table, and how that table's file name and title say which."""

    names: list[str]
    suffix: str = ""
    heading: str = ""

    def retitle(self, table: Table) -> Table:
        table.name += self.suffix
        table.title += self.heading
        return table


def setup_groups(tasks: dict[str, str]) -> list[SetupGroup]:
    """Which setups (name -> task) share a table. While no task has two setups, all of them, a
    column pair per task, as before setups existed; else each setup its own table, titled by
    it, so no table mixes two setups of one task."""
    names = sorted(tasks)
    if len(set(tasks.values())) == len(names):
        return [SetupGroup(names)]
    return [SetupGroup([name], f"_setup{index}", f": {name}")
            for index, name in enumerate(names, start=1)]


def setup_tasks(summary: dict[str, dict[str, dict[str, Any]]]) -> dict[str, str]:
    """setup -> task of a summary."""
    return {setup: next(iter(entries.values()))["task"] for setup, entries in summary.items()}


def _spread(mean: float, std: float, n: int, digits: int = 2, scale: float = 100.0) -> str:
    """`mean ± std` (in % by default), or the mean alone for one seed (a spread of one value is
    no spread)."""
    text = f"{scale * mean:.{digits}f}"
    return text if n < 2 else f"{text} ± {scale * std:.{digits}f}"


def _verdict(comparison: dict[str, Any] | None) -> str:
    """The mark of a paired comparison with random: none without a test (one seed)."""
    if not comparison or comparison["p_value"] is None:
        return ""
    return " *" if comparison["significant"] else " (n.s.)"


def results_table(summary: dict[str, dict[str, dict[str, Any]]], strategies: list[str] | None = None,
                  name: str = "table1", title: str = "AUC and RIPL per strategy") -> Table:
    """Table 1/2 layout: a row per strategy, AUC, RIPL and the gain over zero-shot (%) per
    setup (headed by its task), mean ± std over seeds; then the rows a strategy must beat:
    chance, the majority class and the zero-shot base model."""
    setups = sorted(u for u in summary if strategies is None or set(summary[u]) & set(strategies))
    tasks = setup_tasks(summary)
    present = sorted({s for u in setups for s in summary[u]}, key=display_order)
    rows_for = sorted((s for s in (strategies or present) if s in present), key=display_order)
    has_gain = any(summary[u][s].get("gain_mean") is not None for u in setups for s in rows_for
                   if s in summary[u])
    metrics = ("auc", "ripl", "gain") if has_gain else ("auc", "ripl")  # gain: runs with baselines
    headers = {"auc": "AUC", "ripl": "RIPL", "gain": "gain over zero-shot"}
    columns = ["Method"] + [f"{tasks[u]} {headers[m]}" for u in setups for m in metrics]
    marks = {(u, m): _marks({s: summary[u][s][f"{m}_mean"] for s in rows_for if s in summary[u]})
             for u in setups for m in metrics}
    has_saved = any(summary[u][s].get("savings") for u in setups for s in rows_for
                    if s in summary[u])
    if has_saved:  # after every setup's other columns: one per setup
        columns += [f"{tasks[u]} labels saved" for u in setups]
    table = Table(name, title, columns)
    for strategy in rows_for:
        row = [Cell(strategy)]
        for setup in setups:
            entry = summary[setup].get(strategy)
            for metric in metrics:
                mean = entry[f"{metric}_mean"] if entry else None
                if mean is None:
                    row.append(Cell("–"))
                    continue
                text = _spread(mean, entry[f"{metric}_std"], len(per_seed(entry, metric)))
                if metric == "auc":
                    text += _verdict(entry.get("vs_random"))
                row.append(Cell(text, round(100 * mean, 4),
                                marks[(setup, metric)].get(strategy, "")))
        if has_saved:
            row += [_saved_cell(summary[u].get(strategy)) for u in setups]
        table.rows.append(row)
    levels = {u: baseline_levels({s: summary[u][s] for s in rows_for if s in summary[u]})
              for u in setups}
    for baseline in BASELINES:
        if not any(levels[u][baseline] for u in setups):
            continue
        row = [Cell(baseline.replace("_", "-"))]
        for setup in setups:
            values = list(levels[setup][baseline].values())
            if values:
                mean, std = mean_std(values)
                row.append(Cell(_spread(mean, std, len(values)), round(100 * mean, 4)))
            else:
                row.append(Cell("–"))
            row += [Cell("–")] * (len(metrics) - 1)
        row += [Cell("–")] * (len(setups) if has_saved else 0)
        table.rows.append(row)
    counts = {(u, s): len(summary[u][s]["seeds"]) for u in setups for s in rows_for if s in summary[u]}
    seeds = sorted(set(counts.values()))
    per_setup = {u: {n for (v, _), n in counts.items() if v == u} for u in setups}
    if len(seeds) < 2:
        which = ""
    elif all(len(n) == 1 for n in per_setup.values()):  # the setups differ, not their rows
        which = " (" + ", ".join(f"{tasks[u]}: {min(n)}" for u, n in per_setup.items()) + ")"
    else:
        which = (" (" + ", ".join(f"{s}: {n}" + (f" in {tasks[u]}" if len(setups) > 1 else "")
                                  for (u, s), n in counts.items())
                 + "; rows on different seeds differ by their seeds too, which the paired "
                 "comparisons leave out)")
    metric = _curve_metric(summary)
    on = "" if metric == "accuracy" else (
        f"On {CURVE_METRICS[metric]}: AUC, RIPL and labels saved of its learning curve; no "
        "zero-shot point, "
        "gain or baseline rows, which are accuracies. ")
    table.note = (f"{on}AUC in %, RIPL in % of the gap to 100 (it can fall below −100), gain in "
                  f"points; mean ± sample std (n − 1) over "
                  f"{'/'.join(map(str, seeds))} seed(s){which}"
                  + "; one seed gives one number and no spread, "
                  "so nothing follows from it about noise. (n.s.): the AUC's difference to random, "
                  "paired by seed, is not significant (paired t-test, p ≥ 0.05); *: it is. "
                  "Best bold, second underlined; RIPL: each seed's against random of the same setup "
                  "and seed, then averaged over the seeds random ran too (the paper's Table 1 takes "
                  "the RIPL of the mean AUCs); "
                  "gain: AUC minus the zero-shot accuracy of the same seed's test set. Baseline "
                  "rows (chance, majority class of the test set, zero-shot base model) give the "
                  "accuracy in the AUC column."
                  + (" " + SAVED_NOTE if has_saved else ""))
    return table


SAVED_NOTE = ("Labels saved: 1 − the labels a strategy's curve (linear between rounds) first "
              "needs to reach random's final value (of the table's metric) on the same seed, "
              "over random's budget, "
              "in %, mean (95 % bootstrap interval over seeds); n.r. k/n: k of n seeds never "
              "reached it, each counted at its own budget (no label saved), so the mean is an "
              "upper bound (≤). Random's row is what the first crossing credits a bumpy curve by "
              "chance: read the others against it.")


def _saved_cell(entry: dict[str, Any] | None) -> Cell:
    """Labels saved of a summary entry: mean (interval), `≤` and n.r. k/n when some seeds never
    reached random's final value."""
    saved = (entry or {}).get("savings", {}).get("labels_saved")
    if not saved or saved["mean"] is None:
        return Cell("–")
    text = f"{100 * saved['mean']:.1f}"
    if saved["low"] is not None:
        text += f" ({100 * saved['low']:.1f} to {100 * saved['high']:.1f})"
    if saved["not_reached"]:
        text = f"≤ {text}, n.r. {saved['not_reached']}/{saved['seeds']}"
    return Cell(text, round(100 * saved["mean"], 4))


def table_markdown(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Table 1 of `star compare`: one table while no task has two setups, else one per setup."""
    if not summary:
        return "No run with a test set: no accuracy to compare.\n"
    tables = [group.retitle(results_table({s: summary[s] for s in group.names}))
              for group in setup_groups(setup_tasks(summary))]
    comparisons = comparisons_table(summary)
    if comparisons.rows:
        tables.append(comparisons)
    if len(tables) == 1:
        return tables[0].markdown()
    return "\n".join(f"**{table.title}**\n\n{table.markdown()}" for table in tables)


def calibration_tables(rows: dict[tuple[str, str], list[dict[str, Any]]]) -> list[Table]:
    """ECE and Brier per round, one row per setup (shown by its task) and strategy, one column
    per label count."""
    labels = sorted({r["n_labeled"] for values in rows.values() for r in values})
    keys = sorted(rows, key=lambda k: (k[0], display_order(k[1])))
    tables = []
    for name, title, show in (
            ("calibration_ece", "Expected calibration error (%) per round, mean ± sample std "
             "over seeds",
             lambda r: Cell(_spread(r["ece"], r["ece_std"], r["seeds"], digits=1),
                            round(100 * r["ece"], 3))),
            ("calibration_brier", "Brier score per round, mean ± sample std over seeds",
             lambda r: Cell(_spread(r["brier"], r["brier_std"], r["seeds"], digits=3, scale=1.0),
                            round(r["brier"], 5)))):
        table = Table(name, title, ["Task", "Method", "Seeds", *[f"{n} labels" for n in labels]])
        for setup, strategy in keys:
            by_labels = {r["n_labeled"]: r for r in rows[(setup, strategy)]}
            seeds = max(r["seeds"] for r in by_labels.values())
            task = rows[(setup, strategy)][0]["task"]
            table.rows.append([Cell(task), Cell(strategy), Cell(str(seeds), seeds),
                               *[show(by_labels[n]) if n in by_labels else Cell("–")
                                 for n in labels]])
        tables.append(table)
    tables[0].note = "15 equal-width confidence bins over the test predictions of each run."
    tables[1].note = "Top-label Brier score: squared gap between confidence and correctness."
    return tables


def selection_table(rows: list[dict[str, Any]]) -> Table:
    """Seed-averaged selection insight per setup (shown by its task), strategy and round."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["setup"], row["strategy"], row["round"])].append(row)
    table = Table("selection", "What the dynamic score selected",
                  ["Task", "Method", "Round", "λ(t)", "mean μ_b", "mean μ_f", "r(μ_b, μ_f)",
                   "top-k base∩full", "base∩mixed", "full∩mixed", "MC: r(passes)",
                   "top-k pass 1∩full"])
    for (setup, strategy, k) in sorted(groups, key=lambda g: (g[0], display_order(g[1]), g[2])):
        group = groups[(setup, strategy, k)]

        def mean(key: str, text: Callable[[float], str], rows: list[dict[str, Any]] = group) -> Cell:
            values = [r[key] for r in rows if r.get(key) is not None]
            if not values:
                return Cell("–")
            value = float(np.mean(values))
            return Cell(text(value), value)

        def percent(value: float) -> str:
            return f"{100 * value:.0f} %"

        weight = group[0]["lambda"]
        table.rows.append([
            Cell(group[0]["task"]), Cell(strategy), Cell(str(k), k),
            Cell("–" if weight is None else f"{weight:.2f}", weight),
            mean("base_mean", lambda v: f"{v:.3f}"), mean("full_mean", lambda v: f"{v:.3f}"),
            mean("pearson_base_full", lambda v: f"{v:.2f}"),
            *[mean(key, percent) for key in
              ("overlap_base_full", "overlap_base_mixed", "overlap_full_mixed")],
            mean("mc_pass_r", lambda v: f"{v:.3f}"), mean("overlap_pass_mean", percent)])
    table.note = ("Means over the unlabeled pool before the round's selection, averaged over seeds; "
                  "overlaps are between the top-k sets (k = labels taken that round) ranked by "
                  "μ_b alone, μ_f alone and the mixed score. With MC dropout: the mean correlation "
                  "of μ_f between two passes, and how much of μ_f's top k (ranked by the mean of "
                  "the passes) the first pass alone would have ranked there.")
    return table


def _kappa(value: float | None) -> Cell:
    return Cell("–") if value is None else Cell(f"{value:.3f}", round(value, 5))


def labels_table(records: list[dict[str, Any]], name: str = "labels",
                 title: str = "Labels per round") -> Table:
    """Per run and round: labels so far, their count per label, and how far the predictions
    moved since the last round (κ); the note says which runs may stop labeling. Give it one
    task's runs: a column per label of every run's task."""
    labels = sorted({label for record in records for entry in record["entries"]
                     for label in entry["label_counts"]})
    table = Table(name, title, ["Setup", "Method", "Seed", "Round", "Labels", *labels,
                                "κ with last round", "Answers equal to the suggestion"])
    for record in records:
        for entry in record["entries"]:
            counts = entry["label_counts"]
            table.rows.append([Cell(record["setup"]), Cell(record["strategy"]),
                               Cell(str(record["seed"]), record["seed"]),
                               Cell(str(entry["round"]), entry["round"]),
                               Cell(str(entry["n_labeled"]), entry["n_labeled"]),
                               *[Cell(str(counts.get(label, 0)), counts.get(label, 0))
                                 for label in labels],
                               _kappa(entry.get("agreement")), _anchoring(entry)])
    signals = "; ".join(f"{r['setup']} {r['strategy']} seed {r['seed']}: "
                        f"{'advised' if r['stop_advised'] else 'not yet'}" for r in records)
    table.note = (f"Counts of all labels so far. κ: Cohen's κ between the round's predictions and "
                  f"the last round's on a fixed set. Stopping is advised once κ averages "
                  f"≥ {STOP_KAPPA} over the last {STOP_WINDOW} rounds: {signals}. Answers equal to "
                  f"the suggestion: of the round's batch, how many answers are the model's guess "
                  f"shown beside it (blind: the guess was hidden); from people, a share near all "
                  f"on the uncertain examples a round picks hints at anchoring; from the oracle, "
                  f"it is the last model's accuracy on the batch.")
    return table


def _anchoring(entry: dict[str, Any]) -> Cell:
    agreement = entry.get("suggestion_agreement")
    if not agreement:
        return Cell("–")
    blind = " (blind)" if entry.get("blind") else ""
    return Cell(f"{agreement['agreeing']} of {agreement['answered']}{blind}", agreement["rate"])


def annotator_table(records: list[dict[str, Any]]) -> Table:
    """Per run, Cohen's κ between each pair of annotators who answered the same examples."""
    table = Table("annotator_agreement", "Agreement between annotators",
                  ["Setup", "Method", "Seed", "Annotators", "Shared examples", "κ"])
    for record in records:
        for pair in record["annotators"]:
            table.rows.append([Cell(record["setup"]), Cell(record["strategy"]),
                               Cell(str(record["seed"]), record["seed"]),
                               Cell(" vs ".join(pair["annotators"])),
                               Cell(str(pair["examples"]), pair["examples"]),
                               _kappa(pair["kappa"])])
    table.note = ("Over the examples both annotators answered, from each one's latest answer in "
                  "the label journal; retracted answers count as none.")
    return table


def _percent(value: float | None, digits: int = 1) -> Cell:
    """A share shown and kept (in the CSV) in %."""
    return Cell("–") if value is None else Cell(f"{100 * value:.{digits}f}", round(100 * value, 4))


def class_recall_table(rows: list[dict[str, Any]], name: str = "class_recall",
                       title: str = "Classes at the last round") -> Table:
    """Per setup and strategy (`summary.class_rows`): the last round's accuracy, balanced
    accuracy, macro-F1 and recall per class, in %, averaged over seeds. Give it one task's
    rows: a column per label of every row's task."""
    labels = sorted({label for row in rows for label in row["class_recall"]})
    table = Table(name, title, ["Setup", "Method", "Seeds", "Labels", "accuracy",
                                "balanced accuracy", "macro-F1",
                                *[f"recall {label}" for label in labels]])
    for row in rows:
        table.rows.append([Cell(row["setup"]), Cell(row["strategy"]),
                           Cell(str(row["seeds"]), row["seeds"]),
                           Cell(str(row["n_labeled"]), row["n_labeled"]),
                           *[_percent(row[key]) for key in
                             ("accuracy", "balanced_accuracy", "macro_f1")],
                           *[_percent(row["class_recall"].get(label)) for label in labels]])
    table.note = ("In %, on the test set, mean over seeds. Recall of a class: the share of its "
                  "test examples the model answered with it (– where the test set lacks it); "
                  "balanced accuracy: the mean recall over the classes the test set holds; "
                  "macro-F1: the mean F1 over the classes in the test set or the answers (F1 0 "
                  "for a class never answered right).")
    return table


def batch_labels_table(rows: list[dict[str, Any]], name: str = "batch_labels",
                       title: str = "Labels of the chosen batches against the pool") -> Table:
    """Per setup and strategy (`summary.batch_label_rows`): each label's share of the batches
    and of the pool they came from, in %. Give it one task's rows."""
    labels = sorted({label for row in rows for label in row["shares"]})
    table = Table(name, title, ["Setup", "Method", "Seeds", *[
        f"{label} {where}" for label in labels for where in ("batch", "pool")]])
    for row in rows:
        table.rows.append([Cell(row["setup"]), Cell(row["strategy"]),
                           Cell(str(row["seeds"]), row["seeds"]),
                           *[_percent(row["shares"].get(label, (0.0, 0.0))[which])
                             for label in labels for which in (0, 1)]])
    table.note = ("In %, mean over seeds, over the rounds after the warm start, each weighted by "
                  "its batch size. batch: the label's share of the examples the strategy chose; "
                  "pool: its share of the unlabeled pool each batch was chosen from, which is "
                  "what random selection takes on average (– when the pool's labels are "
                  "unknown, as with people labeling). A strategy that seeks a rare class shows a "
                  "batch share above its pool share.")
    return table


def prompt_table(rows: list[dict[str, Any]]) -> Table:
    """Per setup, strategy and label count (`summary.prompt_rows`): accuracy against the
    untrained prompt, paired by seed."""
    table = Table("against_the_prompt", "Against the prompt", [
        "Setup", "Method", "Labels", "Seeds", "Accuracy", "Minus zero-shot (95 % CI)", "p",
        "Seeds below zero-shot"])
    for row in rows:
        comparison = row["comparison"]
        seeds = len(comparison.seeds)
        interval = ("" if comparison.low is None else
                    f" ({100 * comparison.low:+.2f} to {100 * comparison.high:+.2f})")
        table.rows.append([
            Cell(row["setup"]), Cell(row["strategy"]), Cell(str(row["n_labeled"]), row["n_labeled"]),
            Cell(str(seeds), seeds), _percent(row["accuracy"], 2),
            Cell(f"{100 * comparison.mean:+.2f}{interval}", round(100 * comparison.mean, 4)),
            Cell("–") if comparison.p_value is None else Cell(f"{comparison.p_value:.3g}",
                                                               comparison.p_value),
            Cell(f"{row['below']} of {seeds}", row["below"])])
    table.note = ("Test accuracy in %, mean over seeds; minus zero-shot: the same seed's test "
                  "accuracy of the untrained base model subtracted seed by seed, in points, with "
                  "the paired 95 % t-interval and p-value. A negative mean says the labels so far "
                  "bought a model worse than its prompt.")
    return table


def guard_table(rows: list[dict[str, Any]]) -> Table:
    """Per setup, strategy and label count (`summary.guard_rows`): what the prompt guard handed
    out and on what evidence."""
    table = Table("prompt_guard", "The prompt guard", ["Setup", "Method", "Labels", "Seeds",
                                                       "Base model handed out",
                                                       "A class too rare to check",
                                                       "Tuned recipe, held out", "Base model"])
    for row in rows:
        table.rows.append([Cell(row["setup"]), Cell(row["strategy"]),
                           Cell(str(row["n_labeled"]), row["n_labeled"]),
                           Cell(str(row["seeds"]), row["seeds"]),
                           Cell(f"{row['base_chosen']} of {row['seeds']}", row["base_chosen"]),
                           Cell(str(row["unchecked"]), row["unchecked"]),
                           _percent(row["tuned_cv"]), _percent(row["base"])])
    table.note = ("In %, mean over the seeds the guard checked, on the labels so far: the tuned "
                  "recipe's k-fold held-out balanced accuracy (accuracy for generative tasks) "
                  "against the base model's; a class too rare to check: seeds where a class "
                  "had under `guard.min_per_class` labels, so no fold trained and the base model "
                  "was handed out (under `guard.short_class: score_the_rest` only where fewer "
                  "than two classes had that many; elsewhere both scores leave the short "
                  "classes out). Where the base model holds out better, the round "
                  "evaluates and saves it (its accuracy is then the zero-shot one), so a few "
                  "labels never make the model worse than its prompt; the next batch is picked "
                  "with it only under `guard.select_with: handed` (else with the adapter the "
                  "round trained).")
    return table


def fit_table(rows: list[dict[str, Any]]) -> Table:
    """Per setup and strategy (`summary.fit_rows`): the rounds trained again because their
    adapter fitted its own labels worse than the base model (or no better than chance), and
    those whose labels held one class."""
    table = Table("retries", "Rounds trained again", ["Setup", "Method", "Rounds checked",
                                                      "Trained again", "Draws in all",
                                                      "No draw fitted", "Of one class",
                                                      "At labels"])
    for row in rows:
        table.rows.append([Cell(row["setup"]), Cell(row["strategy"]),
                           Cell(str(row["checked"]), row["checked"]),
                           Cell(str(row["retried"]), row["retried"]),
                           Cell(str(row["draws"]), row["draws"]),
                           Cell(str(row["unfitted"]), row["unfitted"]),
                           Cell(str(row["one_class"]), row["one_class"]),
                           Cell(", ".join(map(str, row["labels"])) or "–")])
    table.note = ("Rounds over all seeds. After training, each round's adapter answered its own "
                  "labels, and so did the base model; where the adapter scored lower (balanced "
                  "accuracy; accuracy for generative tasks) it had not learned them, and the "
                  "round trained again under the next training draw, up to `train.retries` "
                  "times, keeping the first draw that fitted; where no draw fitted, the round "
                  "handed out the base model, as the prompt guard does. Under "
                  "`train.beat_chance` a draw also had to beat chance on its labels (1 / the "
                  "classes they hold). Of one class: rounds whose labels held one class, where "
                  "no draw can, so one draw trained and the base model was handed out; they "
                  "count among the rounds where no draw fitted. At labels: the label counts of "
                  "the rounds trained again.")
    return table


def bandit_table(rows: list[dict[str, Any]]) -> Table:
    """Per setup, strategy and label count (`summary.bandit_rows`): how the bandit shared its
    draws among its arms and what it was rewarded; a column pair per arm of any setup."""
    arms = list(dict.fromkeys(arm for row in rows for arm in row["arms"]))
    table = Table("bandit_arms", "The bandit's arms", [
        "Setup", "Method", "Labels", "Seeds",
        *[f"{arm}: {what}" for arm in arms for what in ("drawn with", "picks")], "Reward"])
    for row in rows:
        table.rows.append([Cell(row["setup"]), Cell(row["strategy"]),
                           Cell(str(row["n_labeled"]), row["n_labeled"]),
                           Cell(str(row["seeds"]), row["seeds"]),
                           *[_percent(row[key].get(arm)) for arm in arms
                             for key in ("drawn_with", "picks")],
                           _percent(row["reward"])])
    table.note = ("In %, per round of `auto`: drawn with, the arm's probability in the draw of "
                  "the round's batch (set by the weights after the round before), mean over the "
                  "seeds; picks, its share of the picks actually drawn, pooled over the seeds "
                  "(– where the setup lacks the arm). Reward: the round's importance-weighted "
                  "accuracy on every label the bandit bought so far (class-balanced under "
                  "train.balance: classes), mean over the seeds.")
    return table


def advice_table(runs: list[dict[str, Any]]) -> Table:
    """Per run, as of its last round: the stopping signals, the learning-curve forecast with
    its interval, and the forecast's check on the run itself (first half fitted, second half
    predicted; mean absolute error in accuracy points)."""
    table = Table("stopping_advice", "Stopping advice and learning-curve forecast",
                  ["Setup", "Strategy", "Seed", "Labels", f"κ (last {STOP_WINDOW})",
                   "changed %", "uncertainty", "stop", "forecast", "check error"])
    for run in sorted(runs, key=lambda r: (r["setup"], display_order(r["strategy"]), r["seed"])):
        rounds = complete_rounds(run)
        stopping = run.get("stopping") or {}
        if not rounds or not stopping:
            continue
        forecast, check = run.get("forecast"), run.get("forecast_check")
        shown = "–"
        if forecast:
            lo, hi = forecast["at_budget_interval"]
            shown = (f"{100 * forecast['at_budget']:.1f} at {forecast['budget']} "
                     f"({100 * lo:.1f}–{100 * hi:.1f})")
        window = stopping.get("kappa_window")
        uncertainty = stopping.get("uncertainty")
        table.rows.append([
            Cell(run["setup"]), Cell(run["strategy"]), Cell(str(run["seed"]), run["seed"]),
            Cell(str(rounds[-1]["n_labeled"]), rounds[-1]["n_labeled"]),
            Cell("–") if window is None else Cell(f"{window:.3f}", window),
            _percent(stopping.get("changed")),
            Cell("–") if uncertainty is None else Cell(f"{uncertainty:.3f}", uncertainty),
            Cell("advised" if stopping.get("stop_advised") else "not yet"),
            Cell(shown, round(100 * forecast["at_budget"], 2) if forecast else None),
            Cell("–") if not check else Cell(
                f"{100 * check['mean_abs_error']:.2f} (fit on {check['fitted_on']})",
                round(100 * check["mean_abs_error"], 3))])
    table.note = (f"Signals on a fixed set, label-free: κ is Cohen's κ with the last round's "
                  f"predictions (mean of the last {STOP_WINDOW}; stop advised at ≥ {STOP_KAPPA}), "
                  "changed the share of predictions that changed in the last round, uncertainty "
                  "the mean 1 − confidence. Forecast: accuracy (%) of the fitted inverse power law "
                  "at the label count shown (the budget, or twice it once it is spent), with its "
                  "95 % residual-bootstrap interval. Check "
                  "error: the same fit on the run's first rounds only, its mean absolute error "
                  "(accuracy points) on the rounds it did not see.")
    return table


def _curve_metric(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """What the summary's curves are of (`classes.CURVE_METRICS`); accuracy for an empty one."""
    return next((e.get("metric", "accuracy") for entries in summary.values()
                 for e in entries.values()), "accuracy")


def per_seed_table(summary: dict[str, dict[str, dict[str, Any]]]) -> Table:
    """Each run's own numbers, which the means and the paired comparisons are made of."""
    metrics = ("auc", "ripl", "gain", "final", "ece_last")
    table = Table("per_seed", "AUC, RIPL, gain, the last round's value and ECE of every run",
                  ["Setup", "Method", "Seed", "AUC", "RIPL", "gain over zero-shot",
                   f"last-round {CURVE_METRICS[_curve_metric(summary)]}", "last-round ECE"])
    for setup in sorted(summary):
        for strategy in sorted(summary[setup], key=display_order):
            entry = summary[setup][strategy]
            values = {metric: per_seed(entry, metric) for metric in metrics}
            for seed in entry["seeds"]:
                table.rows.append([Cell(setup), Cell(strategy), Cell(str(seed), seed), *[
                    Cell(f"{100 * values[m][seed]:.2f}", round(100 * values[m][seed], 4))
                    if seed in values[m] else Cell("–") for m in metrics]])
    table.note = ("In %, one row per run. RIPL against random of the same setup and seed; gain: "
                  "AUC minus the zero-shot accuracy on the same seed's test set; the last round's "
                  "value and ECE at the last round every seed of the strategy reached.")
    return table


def _labels(entry: dict[str, Any]) -> list[int]:
    """The label counts of an entry's learning curve, without the zero-shot point."""
    return [n for n in entry.get("curve", {}).get("n_labeled", []) if n]


def _p_text(p: float) -> str:
    """Three decimals, or two significant digits below 0.001 (where thresholds such as
    Bonferroni's for many tests lie); 0 where the differences have no spread at all."""
    if p == 0:
        return "0"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


COMPARED = {"auc": ("comparisons", "AUC", "AUC", "above 0: the first learned more per label"),
            "final": ("comparisons_final", "the last round's {metric}", "final {metric}",
                      "above 0: the first ends higher"),
            "ece_last": ("comparisons_ece", "the last round's ECE", "ECE",
                         "below 0: the first is better calibrated")}
"""What `comparisons_table` can compare: summary metric -> (table name, title, short name,
how to read the sign); {metric} stands for the summary's curve metric."""


def comparisons_table(summary: dict[str, dict[str, dict[str, Any]]],
                      pairs: Sequence[tuple[str, str]] = (), metric: str = "auc") -> Table:
    """Every strategy against random, and each named pair, paired by seed within a setup: the
    mean difference of `metric` (see `COMPARED`), its 95 % t-interval, the paired t-test's
    p-value and verdict, and how many seeds would detect a difference this large at 80 %
    power."""
    name, title, short, sign = (text.format(metric=CURVE_METRICS[_curve_metric(summary)])
                                for text in COMPARED[metric])
    table = Table(name, f"Paired comparisons of {title} (by seed)",
                  ["Setup", "Comparison", "Seeds", f"Δ {short}", "95 % CI", "p",
                   "verdict (p < 0.05, uncorrected)", "seeds for 80 % power"])
    for setup in sorted(summary):
        entries = summary[setup]
        wanted = [(s, "random") for s in sorted(entries, key=display_order) if s != "random"]
        wanted += [pair for pair in pairs if pair not in wanted]
        for first, second in wanted:
            if first not in entries or second not in entries or (
                    _labels(entries[first]) != _labels(entries[second])):
                continue  # not run here, or at other label counts: nothing to pair
            result = paired(per_seed(entries[first], metric), per_seed(entries[second], metric))
            if result is None:
                continue
            tested = result.p_value is not None
            table.rows.append([
                Cell(setup), Cell(f"{first} − {second}"), Cell(str(len(result.seeds)),
                                                               len(result.seeds)),
                Cell(f"{100 * result.mean:+.2f}", round(100 * result.mean, 4)),
                Cell(f"{100 * result.low:+.2f} to {100 * result.high:+.2f}" if tested else "–"),
                Cell(_p_text(result.p_value) if tested else "–",
                     None if result.p_value is None else float(f"{result.p_value:.3g}")),
                Cell(("significant" if result.significant else "not significant") if tested
                     else "one seed: no test"),
                Cell(str(result.seeds_for_power) if result.seeds_for_power else "–",
                     result.seeds_for_power)])
    table.note = (f"{short} differences in points ({sign}), over the seeds both strategies "
                  "have a value for; 95 % CI: t-interval of the mean difference; p: two-sided paired t-test; "
                  "seeds for 80 % power: how many seeds a paired t-test (α = 0.05) would need "
                  "if the true difference and its spread were those observed here; after a "
                  "significant result the observed difference tends to overstate the true one, so "
                  "read it as a lower bound.")
    tests = sum(row[5].value is not None for row in table.rows)
    if tests > 1:
        table.note += (f" Each p is uncorrected: if no strategy differed, the chance that any "
                       f"of these {tests} tests falls below 0.05 could be as high as "
                       f"{min(100, 5 * tests)} % (Bonferroni: p < {0.05 / tests:.3g} for all "
                       f"{tests} together).")
    return table


def _interval(values: dict[str, Any], scale: float = 100.0, digits: int = 1) -> Cell:
    """`mean (low to high)` of a savings summary (`summary.savings_of`); the mean alone for
    one seed."""
    if values["mean"] is None:
        return Cell("–")
    text = f"{scale * values['mean']:.{digits}f}"
    if values["low"] is not None:
        text += f" ({scale * values['low']:.{digits}f} to {scale * values['high']:.{digits}f})"
    return Cell(text, round(scale * values["mean"], 4))


def _bounded(cell: Cell, saved: dict[str, Any]) -> Cell:
    """`cell` marked `≤` when some seeds never reached random's final value: their savings,
    and so what is computed from them, are upper bounds."""
    return Cell(f"≤ {cell.text}", cell.value) if saved["not_reached"] else cell


def savings_tables(summary: dict[str, dict[str, dict[str, Any]]]) -> list[Table]:
    """Labels saved and the deficiency per setup and strategy, then seed by seed; none when no
    setup ran random."""
    keys = [(u, s) for u in sorted(summary) for s in sorted(summary[u], key=display_order)
            if summary[u][s].get("savings")]
    if not keys:
        return []
    name = CURVE_METRICS[_curve_metric(summary)]
    overall = Table("labels_saved", f"Labels saved against random on {name}, and the deficiency",
                    ["Setup", "Method", "Seeds", "labels saved %", "not reached",
                     "beyond random's own %", "random fell", "deficiency"])
    each = Table("labels_saved_per_seed", f"Labels saved and deficiency of every run, on {name}",
                 ["Setup", "Method", "Seed", f"random's first {name}", f"random's final {name}",
                  "random's budget", "labels needed", "labels saved %",
                  "beyond random's own %", f"reference {name}", "deficiency"])
    for setup, strategy in keys:
        savings = summary[setup][strategy]["savings"]
        saved = savings["labels_saved"]
        beyond = savings["beyond_random"]
        overall.rows.append([Cell(setup), Cell(strategy), Cell(str(saved["seeds"]), saved["seeds"]),
                             _saved_cell(summary[setup][strategy]),
                             Cell(f"{saved['not_reached']}/{saved['seeds']}", saved["not_reached"]),
                             Cell("–") if beyond is None else _bounded(_interval(beyond),
                                                                         saved),
                             Cell(f"{saved['random_fell']}/{saved['seeds']}", saved["random_fell"]),
                             _interval(savings["deficiency"], scale=1.0, digits=2)])
        for row in savings["per_seed"]:
            needed, score = row["needed"], row["deficiency"]
            each.rows.append([
                Cell(setup), Cell(strategy), Cell(str(row["seed"]), row["seed"]),
                _percent(row["random_start"], 2), _percent(row["target"], 2),
                Cell(str(row["budget"]), row["budget"]),
                Cell("not reached") if needed is None else Cell(f"{needed:.1f}", round(needed, 4)),
                _percent(row["saved"]),
                Cell("–") if strategy == "random" else _percent(row["beyond_random"]),
                _percent(row["reference"], 2),
                Cell("–") if score is None else Cell(f"{score:.2f}", round(score, 5))])
    overall.note = (SAVED_NOTE + " Beyond random's own: each seed's saving minus random's own on "
                    "that seed (what the first crossing credits random's bumpy curve), mean (95 % "
                    "bootstrap interval); the saving to read where random's row is not 0. Random "
                    "fell k/n: on k of n seeds random ended at or below its first round, so its "
                    "final value needs no label bought after it: there a saving only says the "
                    "strategy fell less far, and the paired final value and AUC say more. "
                    f"Deficiency (Zhang & Plank 2021): the area between the reference {name} (the "
                    "best of any run of the setup and seed) and the curve, over the same area for "
                    "random; below 1 the strategy stays closer to the reference than random; mean "
                    "(95 % bootstrap interval) over seeds.")
    each.note = (f"One row per run and seed random ran too. Labels needed: where the curve first "
                 f"reaches random's final {name} (linear between rounds); not reached: counted "
                 f"at the strategy's own budget. {name[0].upper() + name[1:]} in %.")
    return [overall, each]


def noise_tables(rows: list[dict[str, Any]], detectable: list[dict[str, Any]]) -> list[Table]:
    """The noise budget per setup and label count (`summary.noise_rows`) and what the seeds
    can detect (`summary.detectable_rows`)."""
    def points(value: float | None, digits: int = 2) -> Cell:
        return Cell("–") if value is None else Cell(f"{100 * value:.{digits}f}",
                                                    round(100 * value, 4))

    budget = Table("noise_budget", "Noise budget: how much of a round's accuracy is noise",
                   ["Setup", "Labels", "accuracy", "test size", "test-set SE", "test-set 95 % ±",
                    "seeds", "seed SD", "training-seed SD", "retrained runs"])
    for row in rows:
        budget.rows.append([
            Cell(row["setup"]), Cell(str(row["n_labeled"]), row["n_labeled"]),
            points(row["accuracy"]),
            Cell("–") if row["test_size"] is None else Cell(str(row["test_size"]), row["test_size"]),
            points(row["test_se"]), points(row["test_half_width"]),
            Cell(str(row["seeds"]), row["seeds"]), points(row["seed_sd"]),
            points(row["train_sd"]), Cell(str(row["train_runs"]), row["train_runs"])])
    budget.note = ("In accuracy points. Accuracy: mean of every run of the setup at that label "
                   "count. Test-set SE: sqrt(p(1 − p)/n) at that accuracy, the spread another "
                   "test set of the same size alone would give (95 % ±: 1.96 SE). Seed SD: "
                   "sample SD between seeds within each strategy, pooled over the strategies: "
                   "test set, pool, warm start, selection and training together. Training-seed "
                   "SD: between retrains of the same labels under other training seeds (star "
                   "noise RUN --round K), pooled over the runs retrained; – where none was.")
    detect = Table("noise_detectable", "What the seeds can detect",
                   ["Setup", "seeds", "SD of paired Δ AUC",
                    "detectable Δ AUC at these seeds", f"at {PLANNED_SEEDS} seeds"])
    for row in detectable:
        detect.rows.append([Cell(row["setup"]), Cell(str(row["seeds"]), row["seeds"]),
                            points(row["difference_sd"]), points(row["detectable"]),
                            points(row["detectable_planned"])])
    detect.note = ("In AUC points. SD of the per-seed AUC differences of each strategy to random "
                   "(pooled over the strategies); detectable: the smallest true mean difference "
                   "a paired t-test (α = 0.05, two-sided) finds with 80 % power given that "
                   "spread. A claimed difference below it cannot be told from seed noise with "
                   "that many seeds.")
    return [budget, detect] if detect.rows else [budget]
