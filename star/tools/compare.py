"""`star compare`: every strategy × seed into OUT/<strategy>/seed<k>, then the summary files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from star.active.classes import CURVE_METRICS
from star.active.loop import run_experiment
from star.active.runfolder import RunFolder, complete_rounds
from star.config import load_config, parse_override
from star.errors import ConfigError
from star.files import write_json, write_text_atomic
from star.progress import log, progress
from star.results.figures import plot_learning_curves
from star.results.savings import labels_saved
from star.results.summary import collect_runs, curve_of, summarize
from star.results.tables import table_markdown


def write_comparison(root: Path, metric: str = "accuracy") -> str:
    """summary.json, table.md and learning_curves.png for the runs below `root`, on `metric`
    (see `classes.CURVE_METRICS`); the table."""
    summary = summarize(collect_runs(root), metric)
    write_json(root / "summary.json", json.loads(json.dumps(summary)))
    table = table_markdown(summary)
    write_text_atomic(root / "table.md", table)
    plot_learning_curves(summary, root / "learning_curves.png")
    return table


def saved_text(results: dict[str, Any], random_folder: Path, metric: str = "accuracy") -> str:
    """", labels saved …" on `metric` of a run against random's run of the same seed
    (`random_folder`), or nothing while random has not run there (or has no test set)."""
    random = RunFolder(random_folder).read_results()
    if results["strategy"] == "random" or not random or not curve_of(random, metric)[0]:
        return ""
    saving = labels_saved(*curve_of(results, metric), *curve_of(random, metric))
    if not saving.reached:
        return f", random's final {CURVE_METRICS[metric]} not reached"
    return f", labels saved vs random on {CURVE_METRICS[metric]} {100 * saving.saved:.1f} %"


def compare(config_path: str | None, overrides: list[str], strategies: list[str],
            seeds: list[int], out: Path, metric: str = "accuracy") -> str:
    """Run every strategy × seed (each resumes if it ran before); returns the table."""
    for text in overrides:
        if parse_override(text)[0] in ("strategy", "seed"):
            raise ConfigError(f"--set {text}: a comparison takes its strategies and seeds "
                              "from its own options (star compare --strategies, --seeds)")
    configs = [load_config(config_path, [*overrides, f"strategy={name}", f"seed={seed}"])
               for seed in seeds for name in strategies]
    if configs and configs[0].loop.annotator == "people":
        raise ConfigError("star compare simulates annotators (loop.annotator: oracle); with "
                          "people, start each run with star run and go on with star next")
    if configs and configs[0].generative and metric != "accuracy":
        raise ConfigError(f"--metric {metric} counts classes, which a generative task has "
                          "not; compare it on accuracy")
    for index, config in enumerate(progress(configs, "compare", unit="run"), start=1):
        start = time.perf_counter()
        results = run_experiment(config, out / config.strategy / f"seed{config.seed}")
        last = complete_rounds(results)[-1]
        shown = (f"AUC {100 * results['auc']:.2f}, final accuracy {100 * last['accuracy']:.2f}"
                 + saved_text(results, out / "random" / f"seed{config.seed}", metric)
                 if results["auc"] is not None else f"no test set, agreement {last['agreement']}")
        log(f"run {index}/{len(configs)} done: {config.strategy} seed {config.seed}, {shown}, "
            f"{time.perf_counter() - start:.0f}s")
    return write_comparison(out, metric)
