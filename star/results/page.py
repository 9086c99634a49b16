"""`star report`: one self-contained HTML page and a Markdown twin for any set of run folders.

Every figure is also its own PNG and every table its own CSV beside the report, so a reader
can reuse them; the HTML embeds the PNGs and opens from disk with no server.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from star.active.runfolder import RunFolder
from star.active.strategies import TABLE1, TABLE2
from star.errors import DataError
from star.results.figures import (
    plot_calibration,
    plot_learning_curves,
    plot_reliability,
    plot_selection,
)
from star.results.summary import (
    calibration_rows,
    collect_runs,
    matched_seeds,
    selection_rows,
    summarize,
)
from star.results.tables import Table, calibration_tables, results_table, selection_table

STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #f3f3f3; }
td:first-child, td:nth-child(2) { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
.note { color: #555; font-size: 13px; }
"""


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)
    """(caption, PNG path) pairs."""


def _last_round_predictions(runs: list[dict], task: str) -> dict[str, tuple[list[float], list[bool]]]:
    pooled: dict[str, tuple[list[float], list[bool]]] = defaultdict(lambda: ([], []))
    for run in runs:
        if run["task"] != task:
            continue
        last = run["rounds"][-1]["round"]
        for p in RunFolder(Path(run["path"])).read_predictions(last) or []:
            pooled[run["strategy"]][0].append(p["confidence"])
            pooled[run["strategy"]][1].append(p["correct"])
    return dict(pooled)


def build_sections(runs: list[dict], out: Path) -> list[Section]:
    """Compute every table and figure, writing PNG and CSV files into `out`."""
    summary = summarize(runs)
    tasks = sorted(summary)
    sections = []
    main = results_table(summary, TABLE1, "table1_main",
                         "Table 1 layout: AUC and RIPL of the main strategies")
    results = Section("Main results (Table 1)", tables=[main])
    present = {s for t in tasks for s in summary[t]}
    ablation_tasks = {t for t in tasks if any("+" in s for s in summary[t])}
    ablations = TABLE2 if ablation_tasks else []
    if present - set(TABLE1) - set(ablations):
        results.tables.append(results_table(summary, None, "all_strategies",
                                            "Every strategy present"))
    if ablations:
        matched = matched_seeds([r for r in runs if r["task"] in ablation_tasks], ablations)
        seeds = {t: sorted({r["seed"] for r in matched if r["task"] == t}) for t in ablation_tasks}
        table2 = results_table(summarize(matched), ablations, "table2_ablation",
                               "Table 2 layout: ablations of the STAR components")
        table2.note += " Only the seeds every row has: " + "; ".join(
            f"{task} {seeds[task]}" for task in sorted(seeds)) + "."
        results.tables.append(table2)
    sections.append(results)
    curves = Section("Learning curves (Fig. 5)", "Accuracy on the test split against the number "
                     "of labels; line: mean over seeds, band: ± one standard deviation.")
    calibration = calibration_rows(runs)
    cal = Section("Calibration", "Expected calibration error (15 equal-width bins) and Brier "
                  "score of the test predictions at every round; reliability diagrams of the "
                  "last round of each strategy (predictions pooled over seeds).",
                  tables=calibration_tables(calibration))
    for suffix, strategies, shown, caption in (
            ("", TABLE1, set(tasks), "main strategies"),
            ("_ablation", ablations and ["random", *ablations], ablation_tasks,
             "ablations (Table 2)")):
        if not strategies:
            continue
        plot_learning_curves({t: summary[t] for t in shown}, out / f"learning_curves{suffix}.png",
                             strategies)
        curves.figures.append((f"Learning curves, {caption}", out / f"learning_curves{suffix}.png"))
        rows = {key: value for key, value in calibration.items() if key[0] in shown}
        if rows:
            plot_calibration(rows, out / f"calibration{suffix}.png", strategies)
            cal.figures.append((f"ECE and Brier score per round, {caption}",
                                out / f"calibration{suffix}.png"))
    sections.append(curves)
    for task in tasks:
        pooled = _last_round_predictions(runs, task)
        if pooled:
            path = out / f"reliability_{task}.png"
            plot_reliability(pooled, f"{task}: reliability, last round", path)
            cal.figures.append((f"{task}: reliability diagrams", path))
    sections.append(cal)
    rows = selection_rows(runs)
    selection = Section("Selection insight", "For runs that record both μ_b (base model) and "
                        "μ_f (LoRA model): how they and λ(t) moved over the rounds, and how much "
                        "the top-k sets ranked by μ_b alone, μ_f alone and the mixed score overlap. "
                        "The table lists every such run; the figures show the STAR runs.")
    if rows:
        selection.tables.append(selection_table(rows))
        star_rows = [r for r in rows if r["strategy"].endswith("-star")] or rows
        for task in sorted({r["task"] for r in star_rows}):
            path = out / f"selection_{task}.png"
            plot_selection(star_rows, task, path)
            selection.figures.append((f"{task}: selection over the rounds", path))
    else:
        selection.text += " No run here records both."
    sections.append(selection)
    for section in sections:
        for table in section.tables:
            table.write_csv(out / f"{table.name}.csv")
    return sections


def _runs_line(runs: list[dict]) -> str:
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for run in runs:
        groups[(run["task"], run["strategy"])].append(run["seed"])
    return "; ".join(f"{task}/{strategy}: seeds {sorted(seeds)}"
                     for (task, strategy), seeds in sorted(groups.items()))


def render_markdown(sections: list[Section], runs: list[dict], title: str) -> str:
    parts = [f"# {title}", "", f"Runs: {_runs_line(runs)}.", ""]
    for section in sections:
        parts += [f"## {section.title}", ""]
        if section.text:
            parts += [section.text, ""]
        for table in section.tables:
            parts += [f"**{table.title}** (`{table.name}.csv`)", "", table.markdown()]
        for caption, path in section.figures:
            parts += [f"![{caption}]({path.name})", ""]
    return "\n".join(parts)


def render_html(sections: list[Section], runs: list[dict], title: str) -> str:
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class='note'>Runs: {html.escape(_runs_line(runs))}.</p>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            body.append(f"<p>{html.escape(section.text)}</p>")
        for table in section.tables:
            body.append(f"<h3>{html.escape(table.title)}</h3>{table.html()}")
        for caption, path in section.figures:
            data = base64.b64encode(path.read_bytes()).decode()
            body.append(f"<figure><img alt='{html.escape(caption)}' "
                        f"src='data:image/png;base64,{data}'>"
                        f"<figcaption class='note'>{html.escape(caption)}</figcaption></figure>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>")


def write_report(runs_dir: Path, out: Path, title: str = "STAR report") -> Path:
    """report.html, report.md, their PNGs and CSVs, and summary.json in `out`."""
    if not runs_dir.is_dir():
        raise DataError(f"runs folder '{runs_dir}' does not exist")
    runs = collect_runs(runs_dir)
    if not runs:
        raise DataError(f"no run folders (results.json with a finished round) below '{runs_dir}'")
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(runs, out)
    (out / "summary.json").write_text(json.dumps(summarize(runs), indent=1))
    (out / "report.md").write_text(render_markdown(sections, runs, title))
    (out / "report.html").write_text(render_html(sections, runs, title))
    return out / "report.html"
