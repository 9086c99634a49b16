"""The bandit's arms in `star report` and `star status`, from results.json written by hand."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from star.results.summary import bandit_rows, collect_runs
from star.tools.cli import main
from star.tools.labels import status
from tests.test_report_setups import make_run

ARMS = ["random", "me-star", "typiclust"]


def bandit(probabilities: list[float], picked: list[str], reward: float,
           arms: list[str] = ARMS) -> dict[str, Any]:
    """A round's bandit record as `Experiment.reward_arms` writes it (the log-weights and the
    picks' q and R are not read by the report)."""
    return {"arms": arms, "log_weights": [0.0] * len(arms), "probabilities": probabilities,
            "picks": [{"id": f"x{i}", "arm": arm, "advisers": [], "probability": 0.1,
                       "candidates": 10} for i, arm in enumerate(picked)],
            "reward": reward}


def auto_run(root: Path, seed: int, rounds: list[tuple[int, dict[str, Any] | None]],
             arms: list[str] = ARMS) -> None:
    """A finished `auto` run on SST-2: (labels, bandit record or None) per round."""
    config = {"strategy": "auto", "seed": seed, "task": {"name": "sst2"},
              "loop": {"budget": rounds[-1][0]}, "bandit": {"arms": arms}}
    entries = [{"round": k, "n_labeled": n, "accuracy": 0.5, "selected_ids": [],
                **({"bandit": record} if record else {})}
               for k, (n, record) in enumerate(rounds)]
    make_run(root / "-".join(arms) / f"seed{seed}", config, entries, auc=0.5)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Two seeds of unequal batches at 8 labels (the warm starts differ: 4 picks against 2),
    and one seed of a setup with two arms.

    At 8 labels, drawn with: random (0.5 + 0.2)/2 = 0.35, me-star (0.3 + 0.2)/2 = 0.25,
    typiclust (0.2 + 0.6)/2 = 0.4 (weighted by picks, random would be (4·0.5 + 2·0.2)/6 = 0.4);
    picks, pooled: random 1/6, me-star 3/6, typiclust 2/6 (the mean of the seeds' shares would
    give random 0.125); reward (0.75 + 0.5)/2 = 0.625 (by picks: 4/6·0.75 + 2/6·0.5 = 0.667).
    At 12 labels: drawn with random 0.3, me-star 0.5, typiclust 0.2; picks 1/8, 6/8, 1/8;
    reward 0.85."""
    root = tmp_path / "runs"
    auto_run(root, 0, [(4, None),
                       (8, bandit([0.5, 0.3, 0.2], ["me-star", "random", "me-star", "me-star"],
                                  0.75)),
                       (12, bandit([0.4, 0.4, 0.2], ["me-star", "me-star", "random", "me-star"],
                                   0.8))])
    auto_run(root, 1, [(6, None),
                       (8, bandit([0.2, 0.2, 0.6], ["typiclust", "typiclust"], 0.5)),
                       (12, bandit([0.2, 0.6, 0.2], ["me-star", "typiclust", "me-star",
                                                     "me-star"], 0.9))])
    auto_run(root, 0, [(4, None), (8, bandit([0.25, 0.75], ["margin"] * 4, 1.0,
                                            ["random", "margin"]))], ["random", "margin"])
    return root


def test_bandit_rows_are_means_over_seeds_and_picks_pooled(runs):
    rows = {(row["setup"], row["n_labeled"]): row for row in bandit_rows(collect_runs(runs))}
    assert len(rows) == 3  # the warm starts, with no record, make no row
    eight = next(row for (_, n), row in rows.items() if n == 8 and row["seeds"] == 2)
    assert eight["arms"] == ARMS
    assert eight["drawn_with"] == pytest.approx({"random": 0.35, "me-star": 0.25,
                                                 "typiclust": 0.4})
    assert eight["picks"] == pytest.approx({"random": 1 / 6, "me-star": 3 / 6,
                                            "typiclust": 2 / 6})
    assert eight["reward"] == pytest.approx(0.625)
    twelve = next(row for (_, n), row in rows.items() if n == 12)
    assert twelve["drawn_with"] == pytest.approx({"random": 0.3, "me-star": 0.5,
                                                  "typiclust": 0.2})
    assert twelve["picks"] == pytest.approx({"random": 1 / 8, "me-star": 6 / 8,
                                             "typiclust": 1 / 8})
    assert twelve["reward"] == pytest.approx(0.85)


def test_the_report_and_status_show_the_arms(runs, tmp_path):
    assert main(["report", str(runs), "--out", str(tmp_path / "report")]) == 0
    with (tmp_path / "report" / "bandit_arms.csv").open(newline="") as file:
        table = list(csv.DictReader(file))
    columns = list(table[0])
    assert columns[:4] == ["Setup", "Method", "Labels", "Seeds"] and columns[-1] == "Reward"
    assert set(columns[4:-1]) == {f"{arm}: {what}" for arm in [*ARMS, "margin"]
                                  for what in ("drawn with", "picks")}
    eight, twelve = (next(row for row in table if (row["Labels"], row["Seeds"]) == (n, seeds))
                     for n, seeds in (("8", "2"), ("12", "2")))
    assert {key: float(eight[key]) for key in columns[4:] if eight[key] != "–"} == pytest.approx({
        "random: drawn with": 35.0, "random: picks": 100 / 6,
        "me-star: drawn with": 25.0, "me-star: picks": 50.0,
        "typiclust: drawn with": 40.0, "typiclust: picks": 100 / 3, "Reward": 62.5}, abs=1e-4)
    assert (eight["margin: drawn with"], eight["margin: picks"]) == ("–", "–")
    assert (float(twelve["random: drawn with"]), float(twelve["me-star: picks"])) == (30.0, 75.0)
    two_arms = next(row for row in table if row["Seeds"] == "1")
    assert (two_arms["margin: drawn with"], two_arms["margin: picks"], two_arms["Reward"],
            two_arms["typiclust: picks"]) == ("75.0", "100.0", "100.0", "–")
    assert "The bandit's arms" in (tmp_path / "report" / "report.md").read_text()

    shown = status(runs / "-".join(ARMS) / "seed0").splitlines()
    assert "drawn with" not in shown[1]  # the warm start draws nothing
    assert shown[2].endswith("; auto: drawn with random 50 %, me-star 30 %, typiclust 20 %, "
                             "reward 75.0 %")
