"""Tables of summaries: Table 1/2 (AUC, RIPL), calibration per round, selection insight.

A `Table` renders itself as Markdown, HTML and CSV, so the report, the comparison summary and
the CSV files show the same cells.
"""

from __future__ import annotations

import csv
import html
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from star.active.strategies import display_order


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


def _marks(values: dict[str, float | None]) -> dict[str, str]:
    """Best and second-best as shown (two decimals of a percentage); ties share a mark."""
    shown = {key: round(100 * v, 2) for key, v in values.items() if v is not None}
    levels = sorted(set(shown.values()), reverse=True)[:2]
    return {key: ("best", "second")[levels.index(v)] for key, v in shown.items() if v in levels}


def results_table(summary: dict[str, dict[str, dict[str, Any]]], strategies: list[str] | None = None,
                  name: str = "table1", title: str = "AUC and RIPL per strategy") -> Table:
    """Table 1/2 layout: a row per strategy, AUC and RIPL (%) per task, mean ± std over seeds."""
    tasks = sorted(t for t in summary if strategies is None or set(summary[t]) & set(strategies))
    present = sorted({s for t in tasks for s in summary[t]}, key=display_order)
    rows_for = sorted((s for s in (strategies or present) if s in present), key=display_order)
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


def calibration_tables(rows: dict[tuple[str, str], list[dict[str, Any]]]) -> list[Table]:
    """ECE and Brier per round, one row per task and strategy, one column per label count."""
    labels = sorted({r["n_labeled"] for values in rows.values() for r in values})
    keys = sorted(rows, key=lambda k: (k[0], display_order(k[1])))
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


def selection_table(rows: list[dict[str, Any]]) -> Table:
    """Seed-averaged selection insight per task, strategy and round."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["strategy"], row["round"])].append(row)
    table = Table("selection", "What the dynamic score selected",
                  ["Task", "Method", "Round", "λ(t)", "mean μ_b", "mean μ_f", "r(μ_b, μ_f)",
                   "top-k base∩full", "base∩mixed", "full∩mixed"])
    for (task, strategy, k) in sorted(groups, key=lambda g: (g[0], display_order(g[1]), g[2])):
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


