"""Summaries of run folders: Table 1 (AUC and RIPL per strategy and task) and Fig. 5 curves.

Everything here reads `results.json` files only, so it works on any set of finished runs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from star.metrics import mean_std, ripl

STRATEGY_ORDER = ["random", "pe", "pe+dynamic", "pe+dynamic+mc", "pe+dynamic+l2", "pe-star",
                  "me", "me+dynamic", "me+dynamic+mc", "me+dynamic+l2", "me-star"]


def collect_runs(root: Path) -> list[dict[str, Any]]:
    """Every finished-or-partial run below `root` (folders holding a results.json)."""
    runs = []
    for path in sorted(root.rglob("results.json")):
        results = json.loads(path.read_text())
        if results.get("rounds"):
            results["path"] = str(path.parent)
            runs.append(results)
    return runs


def _order(name: str) -> tuple[int, str]:
    return (STRATEGY_ORDER.index(name) if name in STRATEGY_ORDER else len(STRATEGY_ORDER), name)


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{task: {strategy: {auc_mean, auc_std, ripl_mean, ripl_std, seeds, curve}}}.

    RIPL of a run is against the `random` run of the same task and seed; without one it is null.
    """
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_key[(run["task"], run["strategy"])].append(run)
    random_auc = {(r["task"], r["seed"]): r["auc"] for r in runs if r["strategy"] == "random"}
    summary: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (task, strategy), group in sorted(by_key.items(), key=lambda kv: (kv[0][0], _order(kv[0][1]))):
        group.sort(key=lambda r: r["seed"])
        aucs = [r["auc"] for r in group]
        ripls = [ripl(r["auc"], random_auc[(task, r["seed"])]) for r in group
                 if (task, r["seed"]) in random_auc]
        length = min(len(r["rounds"]) for r in group)
        accuracy = np.array([[x["accuracy"] for x in r["rounds"][:length]] for r in group])
        auc_mean, auc_std = mean_std(aucs)
        entry: dict[str, Any] = {
            "seeds": [r["seed"] for r in group], "auc_mean": auc_mean, "auc_std": auc_std,
            "ripl_mean": None, "ripl_std": None,
            "curve": {"n_labeled": [x["n_labeled"] for x in group[0]["rounds"][:length]],
                      "accuracy_mean": accuracy.mean(axis=0).tolist(),
                      "accuracy_std": (accuracy.std(axis=0, ddof=1) if len(group) > 1
                                       else np.zeros(length)).tolist()}}
        if ripls and strategy != "random":
            entry["ripl_mean"], entry["ripl_std"] = mean_std(ripls)
        summary[task][strategy] = entry
    return dict(summary)


def _ranked(values: dict[str, float | None]) -> dict[str, str]:
    """Markdown emphasis: best bold, second underlined."""
    present = sorted((v, k) for k, v in values.items() if v is not None)[::-1]
    marks = {}
    if present:
        marks[present[0][1]] = "**"
    if len(present) > 1:
        marks[present[1][1]] = "<u>"
    return marks


def _cell(mean: float | None, std: float | None, mark: str | None) -> str:
    if mean is None:
        return "–"
    text = f"{100 * mean:.2f} ± {100 * std:.2f}"
    if mark == "**":
        return f"**{text}**"
    if mark == "<u>":
        return f"<u>{text}</u>"
    return text


def table_markdown(summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Table 1 layout: a row per strategy, AUC and RIPL (in %) per task, mean ± std over seeds."""
    tasks = sorted(summary)
    strategies = sorted({s for t in tasks for s in summary[t]}, key=_order)
    header = "| Method | " + " | ".join(f"{t} AUC | {t} RIPL" for t in tasks) + " |"
    rule = "|---|" + "---|---|" * len(tasks)
    marks = {(t, metric): _ranked({s: summary[t][s][f"{metric}_mean"] for s in summary[t]})
             for t in tasks for metric in ("auc", "ripl")}
    lines = [header, rule]
    for strategy in strategies:
        cells = [strategy]
        for task in tasks:
            entry = summary[task].get(strategy)
            for metric in ("auc", "ripl"):
                if entry is None:
                    cells.append("–")
                    continue
                cells.append(_cell(entry[f"{metric}_mean"], entry[f"{metric}_std"],
                                   marks[(task, metric)].get(strategy)))
        lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({len(e["seeds"]) for t in tasks for e in summary[t].values()})
    lines.append("")
    lines.append(f"AUC and RIPL in %, mean ± std over {'/'.join(map(str, seeds))} seeds; "
                 "best **bold**, second <u>underlined</u>; RIPL against `random` of the same seed.")
    return "\n".join(lines) + "\n"


def plot_learning_curves(summary: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Fig. 5 layout: one panel per task, accuracy vs labels, mean line and ± std band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted(summary)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for strategy in sorted(summary[task], key=_order):
            curve = summary[task][strategy]["curve"]
            x = np.array(curve["n_labeled"])
            mean, std = np.array(curve["accuracy_mean"]), np.array(curve["accuracy_std"])
            (line,) = ax.plot(x, 100 * mean, marker="o", markersize=3, label=strategy)
            ax.fill_between(x, 100 * (mean - std), 100 * (mean + std), alpha=0.15,
                            color=line.get_color())
        ax.set_title(task)
        ax.set_xlabel("number of labels")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_comparison(root: Path) -> str:
    """summary.json, table.md and learning_curves.png for the runs below `root`; the table."""
    summary = summarize(collect_runs(root))
    (root / "summary.json").write_text(json.dumps(summary, indent=1))
    table = table_markdown(summary)
    (root / "table.md").write_text(table)
    plot_learning_curves(summary, root / "learning_curves.png")
    return table
