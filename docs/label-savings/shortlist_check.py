"""How many of an MC-dropout run's picks the shortlist (`selection.shortlist`) would change,
read off the run's saved files: no model, seconds per run.

Issue 34, part 5. Each round of a run with MC dropout (me-star and its kin) saved, per unlabeled
example, μ_f of each of the K passes (`passes` in rounds/<k>/scores.jsonl), μ_b (`base`) and
whether it was picked (`selected`); results.json holds each round's λ. For each round this
replays the shortlist as the loop would run it (`star.active.shortlist`): the first saved
pass stands in for the shortlist's one pass (another draw from the same masks' distribution);
the c·step examples it ranks highest (λ-mixed with μ_b for a dynamic strategy) keep the run's
K-pass mean, the others their one pass, moved below the shortlist; the top `step` are the
shortlist's picks. The shortlisted examples keep the K passes the run drew, so the check
measures what the shortlist changes, not fresh MC noise.

Per run it reports the share of the run's picks the shortlist picks too (goal: ≥ 95 %), the
share of them inside the shortlist, and the forward passes over examples the shortlist runs
(n + K·c·step: the one pass, then K passes over the shortlist) against the full K·n, beside
the rounds' recorded scoring seconds: what a round would cost, to be measured on real runs.
Only the `top` batch rule (the paper's): the other rules read states the files do not keep.

    .venv/bin/python docs/label-savings/shortlist_check.py RUN_FOLDER... [--shortlist 4] \
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from star.active.shortlist import merge_passes, shortlist_first, shortlist_rows
from star.active.strategies import Strategy, acquisition_scores, get_strategy, select_top
from star.files import read_jsonl, write_json


def check_round(rows: list[dict[str, Any]], strategy: Strategy, *, weight: float, mix: str,
                normalise: str, shortlist: int) -> dict[str, int]:
    """One round's scores.jsonl rows replayed with and without the shortlist: the picks the
    K passes over the whole pool give (which must be the run's), and the shortlist's."""
    passes = np.array([row["passes"] for row in rows], dtype=np.float64).T  # [K, n]
    base = np.array([row["base"] for row in rows]) if strategy.dynamic else None
    picked = {i for i, row in enumerate(rows) if row["selected"]}
    step = len(picked)

    def ranked(per_pass: np.ndarray) -> np.ndarray:
        return acquisition_scores(strategy, per_pass, base, weight=weight, mix=mix,
                                  normalise=normalise).score

    full = set(select_top(ranked(passes), step).tolist())
    if full != picked:
        raise ValueError(f"the K passes' ranking does not give the run's picks ({len(full & picked)} "
                         f"of {step}): is this run's λ, mix or normalise not what its files say?")
    short = shortlist_rows(ranked(passes[:1]), shortlist * step)
    merged = merge_passes(passes[:1], passes[:, short], short)
    chosen = set(select_top(shortlist_first(ranked(merged), short), step).tolist())
    return {"step": step, "identical": len(chosen & picked),
            "in_shortlist": len(picked & set(short.tolist())),
            "passes_full": passes.size, "passes_shortlist": passes.shape[1] + passes.shape[0] * len(short)}


def check_run(folder: Path, shortlist: int) -> dict[str, Any]:
    """Every scored round of the run in `folder`, and their sums."""
    results = json.loads((folder / "results.json").read_text())
    config = yaml.safe_load((folder / "config.yaml").read_text())
    settings = config.get("uncertainty") or {}
    mix, normalise = settings.get("mix", "weighted"), settings.get("normalise", "pool")
    strategy = get_strategy(results["strategy"])
    if not strategy.mc_dropout or strategy.rule != "top" or strategy.measure == "bald":
        raise ValueError(f"{folder}: strategy '{strategy.name}' is not a top-k MC-dropout strategy "
                         "read per pass; the shortlist check replays only those")
    seconds = {r["round"]: r.get("score_seconds") for r in results["rounds"]}
    rounds = []
    for scores in sorted((folder / "rounds").glob("*/scores.jsonl"), key=lambda p: int(p.parent.name)):
        k = int(scores.parent.name)
        weight = results.get("lambda", {}).get(str(k)) if mix == "weighted" else 0.0
        if strategy.dynamic and weight is None:
            raise ValueError(f"{folder}: results.json has no λ for round {k}")
        counts = check_round(read_jsonl(scores), strategy, weight=weight or 0.0, mix=mix,
                             normalise=normalise, shortlist=shortlist)
        rounds.append({"round": k, **counts, "score_seconds": seconds.get(k)})
    total = {key: sum(r[key] for r in rounds)
             for key in ("step", "identical", "in_shortlist", "passes_full", "passes_shortlist")}
    return {"run": str(folder), "strategy": strategy.name, "shortlist": shortlist, "rounds": rounds,
            "identical_share": total["identical"] / total["step"],
            "in_shortlist_share": total["in_shortlist"] / total["step"],
            "pass_share": total["passes_shortlist"] / total["passes_full"]}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (holding results.json)")
    parser.add_argument("--shortlist", type=int, default=4, help="c: the shortlist is c·step")
    parser.add_argument("--json", type=Path, help="also write the reports here")
    args = parser.parse_args(argv)
    if args.shortlist < 1:
        parser.error("--shortlist must be 1 or more")
    reports = [check_run(folder, args.shortlist) for folder in args.runs]
    for report in reports:
        recorded = [r["score_seconds"] for r in report["rounds"] if r["score_seconds"] is not None]
        mean = f"{np.mean(recorded):.0f} s" if recorded else "not recorded"
        print(f"{report['run']}: {100 * report['identical_share']:.1f} % of picks identical, "
              f"{100 * report['in_shortlist_share']:.1f} % inside the shortlist; forward passes "
              f"{100 * report['pass_share']:.1f} % of full MC's (which scored in {mean} a round)")
    if len(reports) > 1:
        steps = sum(r["step"] for report in reports for r in report["rounds"])
        same = sum(r["identical"] for report in reports for r in report["rounds"])
        print(f"all {len(reports)} runs: {100 * same / steps:.1f} % of {steps} picks identical")
    if args.json:
        write_json(args.json, reports)
    return reports


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError, KeyError) as exc:
        sys.exit(f"shortlist_check: {exc}")
