"""`star report`: one self-contained HTML page and a Markdown twin for any set of run folders.

Every figure is also its own PNG and every table its own CSV beside the report, so a reader
can reuse them; the HTML embeds the PNGs and opens from disk with no server.
"""

from __future__ import annotations

import base64
import html
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from star.active.classes import CURVE_METRICS
from star.active.runfolder import RunFolder, complete_rounds
from star.active.strategies import TABLE1, TABLE2, display_order, strategy_of
from star.errors import DataError
from star.files import write_json, write_text_atomic
from star.results.figures import (
    plot_calibration,
    plot_learning_curves,
    plot_reliability,
    plot_selection,
)
from star.results.setups import file_stem
from star.results.summary import (
    bandit_rows,
    batch_label_rows,
    calibration_rows,
    class_rows,
    collect_runs,
    detectable_rows,
    fit_rows,
    guard_rows,
    label_records,
    matched_seeds,
    noise_rows,
    prompt_rows,
    scored,
    selection_rows,
    summarize,
)
from star.results.tables import (
    SetupGroup,
    Table,
    advice_table,
    annotator_table,
    bandit_table,
    batch_labels_table,
    calibration_tables,
    class_recall_table,
    comparisons_table,
    fit_table,
    guard_table,
    labels_table,
    noise_tables,
    per_seed_table,
    prompt_table,
    results_table,
    savings_tables,
    selection_table,
    setup_groups,
)

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


def _runs_line(runs: list[dict]) -> str:
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for run in runs:
        groups[(run["setup"], run["strategy"])].append(run["seed"])
    return "; ".join(f"{setup}/{strategy}: seeds {sorted(seeds)}"
                     for (setup, strategy), seeds in sorted(groups.items()))


def _last_round_predictions(runs: list[dict], setup: str) -> dict[str, tuple[list[float], list[bool]]]:
    pooled: dict[str, tuple[list[float], list[bool]]] = defaultdict(lambda: ([], []))
    for run in runs:
        if run["setup"] != setup:
            continue
        last = complete_rounds(run)[-1]["round"]
        for p in RunFolder(Path(run["path"])).read_predictions(last) or []:
            pooled[run["strategy"]][0].append(p["confidence"])
            pooled[run["strategy"]][1].append(p["correct"])
    return dict(pooled)


def _ablation_setups(summary: dict) -> set[str]:
    """The setups that ran an ablation (a strategy with a `+` switch; a config switch's value
    may hold a `+` too, so only the strategy part of a row counts)."""
    return {setup for setup in summary if any("+" in strategy_of(s) for s in summary[setup])}


def _figure_sets(summary: dict) -> list[tuple[str, list[str], set[str], str]]:
    """(file suffix, strategies, setups, caption) of the figures drawn per set of strategies:
    the main ones on every setup, the ablations on the setups that ran any."""
    ablation = _ablation_setups(summary)
    sets = [("", _rows_of(summary, TABLE1), set(summary), "main strategies")]
    if ablation:
        sets.append(("_ablation", _rows_of(summary, ["random", *TABLE2]), ablation,
                     "ablations (Table 2)"))
    return sets


def _rows_of(summary: dict, strategies: list[str]) -> list[str]:
    """The rows of `summary` that are of `strategies`, those under switches included
    (`setups.fold_switches`), in display order."""
    rows = {row for entries in summary.values() for row in entries}
    return sorted((row for row in rows if strategy_of(row) in strategies), key=display_order)


def _result_tables(summary: dict, runs: list[dict], metric: str) -> list[Table]:
    """Table 1, every strategy when Table 1 leaves some out, and Table 2 when ablations ran,
    over one group of setups (`summary`, on `metric`) and their runs with a test set."""
    main = _rows_of(summary, TABLE1)
    tables = [results_table(summary, main, "table1_main",
                            "Table 1 layout: AUC and RIPL of the main strategies")]
    ablation_setups = _ablation_setups(summary)
    ablations = _rows_of(summary, TABLE2) if ablation_setups else []
    if {s for setup in summary for s in summary[setup]} - set(main) - set(ablations):
        tables.append(results_table(summary, None, "all_strategies", "Every strategy present"))
    if ablations:
        matched = matched_seeds([r for r in runs if r["setup"] in ablation_setups], ablations)
        seeds = {setup: sorted({r["seed"] for r in matched if r["setup"] == setup})
                 for setup in ablation_setups}
        table2 = results_table(summarize(matched, metric), ablations, "table2_ablation",
                               "Table 2 layout: ablations of the STAR components")
        table2.note += " Only the seeds every row has: " + "; ".join(
            f"{setup} {seeds[setup]}" for setup in sorted(seeds)) + "."
        tables.append(table2)
    return tables


def _results_section(runs: list[dict], summary: dict, groups: list[SetupGroup],
                     pairs: Sequence[tuple[str, str]], metric: str) -> Section:
    section = Section("Main results (Table 1)")
    for group in groups:
        part = {setup: summary[setup] for setup in group.names if setup in summary}
        if part:
            section.tables += [group.retitle(t)
                               for t in _result_tables(part, scored(runs), metric)]
    for compared in ("auc", "final"):
        comparisons = comparisons_table(summary, pairs, compared)
        if comparisons.rows:
            section.tables.append(comparisons)
    if summary:
        section.tables.append(per_seed_table(summary))
        section.tables += savings_tables(summary)
    left_out = [run for run in runs if run.get("auc") is None]
    if left_out:
        section.text = (f"Left out of the tables, learning curves and calibration for want of a "
                        f"test set (no accuracy): {_runs_line(left_out)}. Their labels are in "
                        "the section Labels.")
    return section


def _curves_section(summary: dict, out: Path, metric: str) -> Section:
    section = Section("Learning curves (Fig. 5)", f"The test split's {CURVE_METRICS[metric]} "
                      "against the number of labels; line: mean over seeds, band: ± one "
                      "standard deviation.")
    if not summary:
        section.text += " No run here has a test set."
        return section
    for suffix, strategies, shown, caption in _figure_sets(summary):
        path = out / f"learning_curves{suffix}.png"
        plot_learning_curves({setup: summary[setup] for setup in shown}, path, strategies)
        section.figures.append((f"Learning curves, {caption}", path))
    return section


def _noise_section(runs: list[dict], summary: dict) -> Section | None:
    """The noise budget of the runs with a test set; None without any."""
    rows = noise_rows(runs)
    if not rows:
        return None
    return Section("Noise budget", "How much of a round's accuracy is noise: the test set's own "
                   "sampling error, the spread between seeds and, where `star noise` retrained a "
                   "round, the spread between training seeds on the same labels; then the "
                   "smallest AUC difference the seeds here (and 10 seeds) could detect.",
                   tables=noise_tables(rows, detectable_rows(summary)))


def _calibration_section(runs: list[dict], summary: dict, groups: list[SetupGroup],
                         out: Path, pairs: Sequence[tuple[str, str]]) -> Section:
    runs = scored(runs)
    rows = calibration_rows(runs)
    section = Section("Calibration", "Expected calibration error (15 equal-width bins) and "
                      "Brier score of the test predictions at every round; reliability diagrams "
                      "of the last round of each strategy (predictions pooled over seeds).")
    if not rows:
        section.text += " No run here has predictions on a test set."
        return section
    for group in groups:
        part = {key: value for key, value in rows.items() if key[0] in group.names}
        if part:
            section.tables += [group.retitle(t) for t in calibration_tables(part)]
    comparisons = comparisons_table(summary, pairs, "ece_last")
    if comparisons.rows:
        section.tables.append(comparisons)
    for suffix, strategies, shown, caption in _figure_sets(summary):
        part = {key: value for key, value in rows.items()
                if key[0] in shown and key[1] in strategies}
        if part:
            path = out / f"calibration{suffix}.png"
            plot_calibration(part, path, strategies)
            section.figures.append((f"ECE and Brier score per round, {caption}", path))
    for setup in sorted(summary):
        pooled = _last_round_predictions(runs, setup)
        if pooled:
            path = out / f"reliability_{file_stem(setup)}.png"
            plot_reliability(pooled, f"{setup}: reliability, last round", path)
            section.figures.append((f"{setup}: reliability diagrams", path))
    return section


def _selection_section(runs: list[dict], groups: list[SetupGroup], out: Path) -> Section:
    rows = selection_rows(runs)
    section = Section("Selection insight", "For runs that record both μ_b (base model) and "
                      "μ_f (LoRA model): how they and λ(t) moved over the rounds, and how much "
                      "the top-k sets ranked by μ_b alone, μ_f alone and the mixed score overlap. "
                      "The table gives each such strategy per round, averaged over its seeds; "
                      "the figures show the STAR runs.")
    if not rows:
        section.text += " No run here records both."
        return section
    for group in groups:
        part = [row for row in rows if row["setup"] in group.names]
        if part:
            section.tables.append(group.retitle(selection_table(part)))
    star_rows = [r for r in rows if r["strategy"].endswith("-star")] or rows
    for setup in sorted({r["setup"] for r in star_rows}):
        path = out / f"selection_{file_stem(setup)}.png"
        plot_selection(star_rows, setup, path)
        section.figures.append((f"{setup}: selection over the rounds", path))
    return section


def _classes_section(runs: list[dict]) -> Section | None:
    """Whether strategies found the rare classes: recall per class at the last round, and the
    labels of the batches against the pool's; a table of each per task (tasks have labels of
    their own). None when no run records them (runs from before STAR did)."""
    recall, batches = class_rows(runs), batch_label_rows(runs)
    if not recall and not batches:
        return None
    section = Section("Classes", "Accuracy hides a rare class; these tables show whether each "
                      "strategy learned every class and whether its batches sought the rare "
                      "ones.")
    for rows, make, name, title in (
            (recall, class_recall_table, "class_recall", "Classes at the last round"),
            (batches, batch_labels_table, "batch_labels",
             "Labels of the chosen batches against the pool")):
        tasks = sorted({row["task"] for row in rows})
        for task in tasks:
            mine = [row for row in rows if row["task"] == task]
            section.tables.append(make(mine) if len(tasks) == 1 else
                                  make(mine, f"{name}_{file_stem(task)}", f"{title}, {task}"))
    return section


def _labels_section(records: list[dict]) -> Section:
    """A labels table per task, since tasks have labels of their own (`labels.csv` while
    there is one task, `labels_<task>.csv` for each of several)."""
    tasks = sorted({record["task"] for record in records})
    if len(tasks) == 1:
        tables = [labels_table(records)]
    else:
        tables = [labels_table([r for r in records if r["task"] == task],
                               f"labels_{file_stem(task)}", f"Labels per round, {task}")
                  for task in tasks]
    section = Section("Labels", "What the labels so far look like and whether more are worth "
                      "it: the count of each label, how much the predictions on a fixed set "
                      "still change from one round to the next, the stopping signal, and, where "
                      "annotators labeled the same examples, how well they agree.",
                      tables=tables)
    if any(record["annotators"] for record in records):
        section.tables.append(annotator_table(records))
    else:
        section.text += " No two annotators labeled the same examples here."
    return section


def build_sections(runs: list[dict], summary: dict, out: Path,
                   pairs: Sequence[tuple[str, str]] = (), metric: str = "accuracy"
                   ) -> list[Section]:
    """Compute every table and figure, writing PNG and CSV files into `out`. Each table covers
    one group of setups (see `setup_groups`): all of them while no task has two setups.
    `pairs` are strategy pairs compared by seed besides each strategy against random;
    `summary` is `summarize(runs, metric)`, computed once by the caller (it reads every last
    round's predictions)."""
    groups = setup_groups({run["setup"]: run["task"] for run in runs})
    sections = [_results_section(runs, summary, groups, pairs, metric),
                _curves_section(summary, out, metric),
                _calibration_section(runs, summary, groups, out, pairs),
                _selection_section(runs, groups, out)]
    classes = _classes_section(runs)
    if classes:
        sections.append(classes)
    noise = _noise_section(runs, summary)
    if noise:
        sections.append(noise)
    against = prompt_rows(runs)
    if against:
        prompt = Section("Against the prompt", "Whether each label count bought a model better "
                         "than the untrained prompt, and, where the prompt guard ran, what it "
                         "handed out.", tables=[prompt_table(against)])
        guarded = guard_rows(runs)
        if guarded:
            prompt.tables.append(guard_table(guarded))
        sections.append(prompt)
    refitted = fit_rows(runs)
    if refitted:
        sections.append(Section("Rounds trained again", "Where a round's adapter did not fit "
                                "its own labels (below the base model on them, or under "
                                "`train.beat_chance` no better than chance) and the round "
                                "trained under another draw or handed out the base model "
                                "(`train.retries`).", tables=[fit_table(refitted)]))
    drawn = bandit_rows(runs)
    if drawn:
        sections.append(Section("The bandit's arms", "How `auto` shared its draws among the "
                                "strategies it hedges over, round by round, and the reward "
                                "that moved the shares.", tables=[bandit_table(drawn)]))
    advice = advice_table(runs)
    if advice.rows:
        sections.append(Section("Stopping advice and forecast", "Whether more labels are still "
                                "changing the model, and what the learning curve so far says "
                                "they would buy.", tables=[advice]))
    records = label_records(runs)
    if records:
        sections.append(_labels_section(records))
    for section in sections:
        for table in section.tables:
            table.write_csv(out / f"{table.name}.csv")
    return sections


def render_markdown(sections: list[Section], runs: list[dict], title: str) -> str:
    parts = [f"# {title}", "", f"Runs: {_runs_line(runs)}.", ""]
    for section in sections:
        parts += [f"## {section.title}", ""]
        if section.text:
            parts += [section.text, ""]
        for table in section.tables:
            parts += [f"**{table.title}** (`{table.name}.csv`)", "", table.markdown(fold=True)]
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


def write_report(runs_dir: Path, out: Path, title: str = "STAR report",
                 pairs: Sequence[tuple[str, str]] = (), metric: str = "accuracy",
                 switches: list[str] | None = None) -> Path:
    """report.html, report.md, their PNGs and CSVs, and summary.json in `out`; AUC, RIPL and
    the learning curves on `metric` (see `classes.CURVE_METRICS`); the config keys in
    `switches` compared as strategies (`setups.fold_switches`)."""
    if not runs_dir.is_dir():
        raise DataError(f"runs folder '{runs_dir}' does not exist")
    runs = collect_runs(runs_dir, switches)
    if not runs:
        raise DataError(f"no run folders (results.json with a finished round) below '{runs_dir}'")
    summary = summarize(runs, metric)  # before any file: a missing metric writes nothing
    rows = {strategy for entries in summary.values() for strategy in entries}
    missing = [name for pair in pairs for name in pair if name not in rows]
    if missing:  # a typo would otherwise drop the pair from the tables without a word
        raise DataError(f"--pairs names '{missing[0]}', a row no setup here has; the rows are: "
                        f"{', '.join(sorted(rows, key=display_order))}")
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(runs, summary, out, pairs, metric)
    write_json(out / "summary.json", json.loads(json.dumps(summary)))
    write_text_atomic(out / "report.md", render_markdown(sections, runs, title))
    write_text_atomic(out / "report.html", render_html(sections, runs, title))
    return out / "report.html"
