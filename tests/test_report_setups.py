"""Reports on run folders made by hand: setups never mixed, duplicates refused, and the labels
of runs labeled by people (no test set)."""

from __future__ import annotations

import csv
import json
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
import yaml

from star.active.journal import Answer
from star.active.learning_curve import auc
from star.active.runfolder import RunFolder
from star.config import StarConfig
from star.errors import ConfigError
from star.results.setups import (
    file_stem,
    fold_switches,
    name_setups,
    settle_picking_keys,
    setup_key,
)
from star.results.summary import calibration_rows, collect_runs, summarize
from star.results.tables import calibration_tables, results_table
from star.tools.cli import main
from star.tools.compare import write_comparison

SMALL = "HuggingFaceTB/SmolLM2-135M-Instruct"
LARGE = "HuggingFaceTB/SmolLM2-1.7B-Instruct"


def make_run(folder: Path, config: dict[str, Any], rounds: list[dict[str, Any]],
             **results: Any) -> RunFolder:
    """A run folder as `star run` leaves it: config.yaml, results.json and, per round, the test
    predictions (confidence 0.8, right as often as the round's accuracy says)."""
    run = RunFolder(folder)
    run.create()
    run.write_config(yaml.safe_dump(config))
    run.write_results({"task": config["task"]["name"], "strategy": config["strategy"],
                       "seed": config["seed"], "rounds": rounds, **results})
    for entry in rounds:
        right = round(10 * entry["accuracy"]) if entry["accuracy"] is not None else None
        run.write_predictions(entry["round"], [
            {"id": str(i), "prediction": "yes", "gold": "yes", "confidence": 0.8,
             "correct": None if right is None else i < right} for i in range(10)])
    return run


def scored_run(root: Path, model: str, strategy: str, *, seed: int, accuracy: list[float]) -> None:
    """A finished two-round SST-2 run (8 and 16 labels) of `model`."""
    config = {"strategy": strategy, "seed": seed, "model": {"name": model},
              "task": {"name": "sst2"}, "loop": {"budget": 16}}
    rounds = [{"round": k, "n_labeled": 8 * (k + 1), "accuracy": a, "selected_ids": []}
              for k, a in enumerate(accuracy)]
    make_run(root / model.split("-")[1] / strategy / f"seed{seed}", config, rounds,
             auc=auc([8, 16], accuracy))


@pytest.fixture
def two_models(tmp_path: Path) -> Path:
    """random and me-star on two seeds with two models. AUC (mean of the two accuracies):
    135M random 0.6 / 0.5, me-star 0.7 / 0.75; 1.7B random 0.8 / 0.9, me-star 0.9 / 0.92."""
    root = tmp_path / "runs"
    for model, strategy, seed, accuracy in (
            (SMALL, "random", 0, [0.5, 0.7]), (SMALL, "random", 1, [0.4, 0.6]),
            (SMALL, "me-star", 0, [0.6, 0.8]), (SMALL, "me-star", 1, [0.7, 0.8]),
            (LARGE, "random", 0, [0.7, 0.9]), (LARGE, "random", 1, [0.9, 0.9]),
            (LARGE, "me-star", 0, [0.9, 0.9]), (LARGE, "me-star", 1, [0.88, 0.96])):
        scored_run(root, model, strategy, seed=seed, accuracy=accuracy)
    return root


def test_two_models_are_two_setups_with_their_own_ripl(two_models):
    summary = summarize(collect_runs(two_models))
    small = "SST-2 · model.name=SmolLM2-135M-Instruct"
    large = "SST-2 · model.name=SmolLM2-1.7B-Instruct"
    assert set(summary) == {small, large}
    # RIPL = (AUC − AUC_random) / (1 − AUC_random), random of the same model and seed
    assert summary[small]["me-star"]["ripl_per_seed"] == pytest.approx([0.1 / 0.4, 0.25 / 0.5])
    assert summary[large]["me-star"]["ripl_per_seed"] == pytest.approx([0.1 / 0.2, 0.02 / 0.1])
    assert summary[large]["me-star"]["ripl_mean"] == pytest.approx(0.35)
    assert summary[small]["random"]["auc_per_seed"] == pytest.approx([0.6, 0.5])
    assert summary[small]["random"]["ripl_per_seed"] == [None, None]
    assert summary[large]["me-star"]["setup"] == {"model.name": LARGE}
    assert summary[large]["me-star"]["task"] == "SST-2"


def test_report_shows_each_setup_as_its_own_table(two_models, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(two_models), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    for index, (model, ripl) in enumerate((("SmolLM2-1.7B-Instruct", "35.0"),  # sorted by name
                                           ("SmolLM2-135M-Instruct", "37.5")), start=1):
        assert (f"**Table 1 layout: AUC and RIPL of the main strategies: SST-2 · model.name={model}"
                f"** (`table1_main_setup{index}.csv`)") in markdown
        rows = list(csv.reader((out / f"table1_main_setup{index}.csv").open()))
        assert rows[0] == ["Method", "SST-2 AUC", "SST-2 RIPL", "SST-2 labels saved"]
        assert rows[2][0] == "me-star" and float(rows[2][2]) == pytest.approx(float(ripl))
        calibration = list(csv.reader((out / f"calibration_ece_setup{index}.csv").open()))
        assert [r[1] for r in calibration[1:]] == ["random", "me-star"]
    assert not (out / "table1_main.csv").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary) == 2
    table = write_comparison(two_models)  # `star compare`'s table.md
    assert table.count("**AUC and RIPL per strategy: SST-2 · model.name=") == 2


def test_setup_names_show_the_model_and_the_keys_that_differ():
    runs = [{"task": "SST-2", "config": {"strategy": s, "seed": 0, "model": {"name": m},
                                         "loop": {"budget": b}}}
            for s, m, b in (("random", "a/x", 80), ("me", "a/x", 80), ("random", "a/x", 40),
                            ("random", "b/x", 40))]
    runs.append({"task": "OBQA", "config": {"model": {"name": "a/x"}}})
    name_setups(runs)
    assert [r["setup"] for r in runs] == [
        'SST-2 · model.name="a/x" · loop.budget=80', 'SST-2 · model.name="a/x" · loop.budget=80',
        'SST-2 · model.name="a/x" · loop.budget=40', 'SST-2 · model.name="b/x" · loop.budget=40',
        "OBQA"]  # x and x alike once shortened: full values
    assert runs[3]["setup_keys"] == {"loop.budget": 40, "model.name": "b/x"}
    assert runs[4]["setup_keys"] == {}


def test_two_runs_of_one_setup_strategy_and_seed_are_refused(tmp_path, capsys):
    root = tmp_path / "runs"
    for copy in ("a", "b"):
        scored_run(root / copy, SMALL, "random", seed=0, accuracy=[0.5, 0.7])
    assert main(["report", str(root), "--out", str(tmp_path / "report")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert str(root / "a" / "135M" / "random" / "seed0") in error
    assert str(root / "b" / "135M" / "random" / "seed0") in error


@pytest.fixture
def labeled_by_people(tmp_path: Path) -> Path:
    """Three rounds labeled by alice and bob without a test set, 24 of 40 labels so far. They
    share a, b and c and disagree on b; bob's d is retracted, alice changed her mind on c."""
    root = tmp_path / "runs"
    config = {"strategy": "random", "seed": 0, "task": {"name": "custom", "test_file": None},
              "loop": {"budget": 40, "annotator": "people"}}
    rounds = [{"round": k, "n_labeled": 8 * (k + 1), "accuracy": None, "agreement": kappa,
               "label_counts": counts, "selected_ids": []}
              for k, kappa, counts in ((0, None, {"no": 5, "yes": 3}),
                                       (1, 0.5, {"no": 9, "yes": 7}),
                                       (2, 1.0, {"no": 12, "yes": 12}))]
    run = make_run(root / "people", config, rounds, auc=None, stopping={"stop_advised": False})
    run.journal.append([Answer(i, v, who, round=0, source="page") for i, v, who in (
        ("a", "yes", "alice"), ("b", "yes", "alice"), ("c", "yes", "alice"), ("c", "no", "alice"),
        ("a", "yes", "bob"), ("b", "no", "bob"), ("c", "no", "bob"), ("d", "yes", "bob"),
        ("d", None, "bob"), ("d", "no", "alice"))])
    return root


def test_report_shows_the_labels_of_a_run_without_a_test_set(labeled_by_people, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(labeled_by_people), "--out", str(out)]) == 0
    markdown = (out / "report.md").read_text()
    assert "## Labels" in markdown
    assert "Left out of the tables, learning curves and calibration" in markdown
    assert "| Setup | Method | Seed | Round | Labels | no | yes | κ with last round |" in markdown
    assert "| custom | random | 0 | 1 | 16 | 9 | 7 | 0.500 |" in markdown
    assert "custom random seed 0: not yet" in markdown
    # alice yes/yes/no, bob yes/no/no on a, b, c: p_o = 2/3, p_e = (2·1 + 1·2)/9 = 4/9,
    # κ = (2/3 − 4/9) / (1 − 4/9) = 0.4; d (retracted by bob) is not shared
    assert "| custom | random | 0 | alice vs bob | 3 | 0.400 |" in markdown
    assert json.loads((out / "summary.json").read_text()) == {}


def test_comparison_of_runs_without_a_test_set_says_so(labeled_by_people):
    assert "No run with a test set" in write_comparison(labeled_by_people)
    assert (labeled_by_people / "learning_curves.png").exists()


def test_a_setup_name_shows_three_keys_besides_the_model():
    runs = [{"task": "T", "config": {"model": {"name": "m"}, "loop": dict.fromkeys("abcde", value)}}
            for value in (1, 2)]
    name_setups(runs)
    assert runs[1]["setup"] == "T · model.name=m · loop.a=2 · loop.b=2 · loop.c=2 · +2 more keys"
    assert runs[1]["setup_keys"] == {f"loop.{key}": 2 for key in "abcde"}


def test_baselines_start_the_curves_and_fill_their_rows(tmp_path):
    """Two seeds of random and me with their zero-shot, majority and chance accuracies:
    the curve starts at 0 labels, the gain is AUC − zero-shot, the rows are means ± sample std."""
    root = tmp_path / "runs"
    zero_shot, majority = {0: 0.6, 1: 0.7}, {0: 0.55, 1: 0.5}
    for strategy, seed, accuracy in (("random", 0, [0.5, 0.7]), ("random", 1, [0.6, 0.8]),
                                     ("me", 0, [0.7, 0.9]), ("me", 1, [0.7, 0.8])):
        config = {"strategy": strategy, "seed": seed, "task": {"name": "sst2"}}
        rounds = [{"round": k, "n_labeled": 8 * (k + 1), "accuracy": a, "selected_ids": []}
                  for k, a in enumerate(accuracy)]
        make_run(root / strategy / f"seed{seed}", config, rounds, auc=auc([8, 16], accuracy),
                 baselines={"chance": 0.5, "majority": majority[seed],
                            "zero_shot": zero_shot[seed]})
    summary = summarize(collect_runs(root))
    (entries,) = summary.values()
    me = entries["me"]
    assert me["curve"]["n_labeled"] == [0, 8, 16]
    assert me["curve"]["accuracy_mean"] == pytest.approx([0.65, 0.7, 0.85])
    assert me["gain_per_seed"] == pytest.approx([0.8 - 0.6, 0.75 - 0.7])
    assert me["gain_mean"] == pytest.approx(0.125)
    assert entries["random"]["gain_per_seed"] == pytest.approx([0.6 - 0.6, 0.7 - 0.7])
    write_comparison(root)
    table = (root / "table.md").read_text()
    assert "gain over zero-shot" in table
    assert "| zero-shot | 65.00 ± 7.07 | – | – |" in table  # std of 0.6, 0.7 (ddof 1)
    assert "| majority | 52.50 ± 3.54 | – | – |" in table
    assert "| chance | 50.00 ± 0.00 | – | – |" in table
    # RIPL (0.8 − 0.6)/0.4 = 0.5 and (0.75 − 0.7)/0.3 = 0.1667
    assert "| me | **77.50 ± 3.54 (n.s.)** | **33.33 ± 23.57** | **12.50 ± 10.61** |" in table
    # paired by seed: differences 0.2 and 0.05; t(0.975, 1 df) = 12.706, half-width
    # 12.706 · 0.10607 / √2 = 0.953; t = 0.125 / 0.075 = 1.667, p = 1 − 2·atan(1.667)/π = 0.344
    assert ("| SST-2 | me − random | 2 | +12.50 | -82.80 to +107.80 | 0.344 | not significant |"
            in table)
    # calibration: confidence 0.8 throughout, so ECE = |accuracy − 0.8| and the top-label Brier
    # score = accuracy · 0.2² + (1 − accuracy) · 0.8². me at 8 labels: 0.7 and 0.7; at 16: 0.9, 0.8
    ece, brier = calibration_tables(calibration_rows(collect_runs(root)))
    me_ece = next(row for row in ece.rows if row[1].text == "me")
    assert [cell.text for cell in me_ece] == ["SST-2", "me", "2", "10.0 ± 0.0", "5.0 ± 7.1"]
    me_brier = next(row for row in brier.rows if row[1].text == "me")
    # 16 labels: 0.9·0.04 + 0.1·0.64 = 0.100 and 0.8·0.04 + 0.2·0.64 = 0.160: std 0.06/√2
    assert [cell.text for cell in me_brier[3:]] == ["0.220 ± 0.000", "0.130 ± 0.042"]
    assert me["curve"]["accuracy_std"] == pytest.approx([0.0707107, 0.0, 0.0707107], abs=1e-6)


def test_ripl_spread_counts_the_seeds_random_ran(tmp_path):
    """me at seeds 0 and 1, random at seed 0 only: the AUC has two seeds, the RIPL one, so the
    RIPL cell is one number, without a "± 0.00" that would claim a spread of zero."""
    root = tmp_path / "runs"
    for strategy, seed, accuracy in (("random", 0, [0.5, 0.7]), ("me", 0, [0.7, 0.9]),
                                     ("me", 1, [0.7, 0.8])):
        config = {"strategy": strategy, "seed": seed, "task": {"name": "sst2"}}
        rounds = [{"round": k, "n_labeled": 8 * (k + 1), "accuracy": a, "selected_ids": []}
                  for k, a in enumerate(accuracy)]
        make_run(root / strategy / f"seed{seed}", config, rounds, auc=auc([8, 16], accuracy))
    table = results_table(summarize(collect_runs(root)))
    me = next(row for row in table.rows if row[0].text == "me")
    # AUC 0.8 and 0.75; RIPL of seed 0: (0.8 − 0.6) / 0.4 = 0.5; labels saved, seed 0 alone:
    # me's first round (8 labels) reaches random's final 0.7 already: 1 − 8/16
    assert [cell.text for cell in me[1:]] == ["77.50 ± 3.54", "50.00", "50.0"]
    assert "over 1/2 seed(s) (random: 1, me: 2; rows on different seeds differ" in table.note


def test_seed_counts_are_named_per_task_when_each_task_is_even(tmp_path):
    """SST-2 at two seeds and OBQA at one, every strategy alike within its task: the note
    names the count per task, and says nothing of rows on different seeds, since none are."""
    root = tmp_path / "runs"
    for task, seeds in (("sst2", (0, 1)), ("obqa", (0,))):
        for strategy in ("random", "me"):
            for seed in seeds:
                config = {"strategy": strategy, "seed": seed, "task": {"name": task}}
                rounds = [{"round": k, "n_labeled": 8 * (k + 1), "accuracy": a,
                           "selected_ids": []} for k, a in enumerate([0.5, 0.7])]
                make_run(root / task / strategy / f"seed{seed}", config, rounds,
                         auc=auc([8, 16], [0.5, 0.7]))
    note = results_table(summarize(collect_runs(root))).note
    assert "over 1/2 seed(s) (OBQA: 1, SST-2: 2); one seed gives one number" in note
    assert "rows on different seeds" not in note


def test_each_task_has_its_own_labels_table(tmp_path):
    """SST-2 labels 0/1 and OBQA A–D: a table (and CSV) per task, each with its own labels
    only, instead of one table where every row has zeros under the other task's labels."""
    root = tmp_path / "runs"
    for task, counts in (("sst2", {"0": 3, "1": 5}), ("obqa", {"A": 2, "C": 6})):
        config = {"strategy": "random", "seed": 0, "task": {"name": task}}
        rounds = [{"round": 0, "n_labeled": 8, "accuracy": 0.5, "label_counts": counts,
                   "selected_ids": []}]
        make_run(root / task, config, rounds, auc=auc([8], [0.5]))
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out)]) == 0
    assert not (out / "labels.csv").exists()
    with (out / "labels_SST-2.csv").open() as f:
        assert list(csv.reader(f)) == [
            ["Setup", "Method", "Seed", "Round", "Labels", "0", "1", "κ with last round",
             "Answers equal to the suggestion"],
            ["SST-2", "random", "0", "0", "8", "3", "5", "–", "–"]]
    with (out / "labels_OBQA.csv").open() as f:
        assert next(csv.reader(f))[5:] == ["A", "C", "κ with last round",
                                           "Answers equal to the suggestion"]
    markdown = (out / "report.md").read_text()
    assert "**Labels per round, OBQA** (`labels_OBQA.csv`)" in markdown
    assert "| OBQA | random | 0 | 0 | 8 | 2 | 6 | – | – |" in markdown


def test_a_key_added_since_an_older_run_takes_its_default():
    """An older run lacks `guard` and `train.balance`: at their defaults, a new run of the same
    settings is its setup; set otherwise, the new run is a setup of its own."""
    old = {"task": "T", "config": {"strategy": "random", "seed": 0, "loop": {"budget": 32}}}
    same = {"task": "T", "config": {**old["config"], "guard": {"folds": 4, "max_labels": 64},
                                    "train": {"balance": "none"}}}
    other = {"task": "T", "config": {**same["config"], "train": {"balance": "classes"}}}
    runs = [old, same, other]
    name_setups(runs)
    assert old["setup"] == same["setup"] != other["setup"]
    assert other["setup_keys"] == {"train.balance": "classes"}


def test_a_long_setup_name_makes_a_short_distinct_file_stem():
    long_a, long_b = ("SST-2 · " + "x" * 200 + tail for tail in ("a", "b"))
    assert len(file_stem(long_a)) == 96 and file_stem(long_a) != file_stem(long_b)
    assert file_stem("SST-2 · loop.budget=80") == "SST-2_loop.budget=80"


def switched_runs(root: Path) -> Path:
    """SST-2, seeds 0 and 1: random, random with `train.balance: classes` (in its own folder,
    as `--set` variants are kept) and me; final accuracies random 0.6 0.7, balanced 0.7 0.75,
    me 0.8 0.9 (8 and 16 labels)."""
    for folder, strategy, extra, finals in (
            ("random", "random", {"train": {"balance": "none"}}, (0.6, 0.7)),
            ("balance/random", "random", {"train": {"balance": "classes"}}, (0.7, 0.75)),
            ("me", "me", {"train": {"balance": "none"}}, (0.8, 0.9))):
        for seed, final in enumerate(finals):
            config = {"strategy": strategy, "seed": seed, "task": {"name": "sst2"},
                      "loop": {"budget": 16}, **extra}
            rounds = [{"round": k, "n_labeled": 8 * (k + 1), "accuracy": a, "selected_ids": []}
                      for k, a in enumerate([0.5, final])]
            make_run(root / folder / f"seed{seed}", config, rounds, auc=auc([8, 16], [0.5, final]))
    return root


def test_a_switched_config_key_is_a_row_of_its_setup(tmp_path):
    root = switched_runs(tmp_path / "runs")
    apart = {(run["setup"], run["strategy"]) for run in collect_runs(root)}
    assert len({setup for setup, _ in apart}) == 2  # without switches: a setup of its own
    runs = collect_runs(root, ["train.balance"])
    assert {(run["setup"], run["strategy"]) for run in runs} == {
        ("SST-2", "random"), ("SST-2", "random train.balance=classes"), ("SST-2", "me")}
    assert all("balance" not in run["config"].get("train", {}) for run in runs)
    entries = summarize(runs)["SST-2"]
    assert list(entries) == ["random", "random train.balance=classes", "me"]  # display order
    # paired with random by seed: final accuracy +0.1 and +0.05, AUC half of it
    assert entries["random train.balance=classes"]["vs_random"]["mean"] == pytest.approx(0.0375)
    assert entries["random train.balance=classes"]["final_per_seed"] == pytest.approx([0.7, 0.75])


def test_report_compares_switches_and_names_them_in_pairs(tmp_path, capsys):
    root, out = switched_runs(tmp_path / "runs"), tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--switches", "train.balance",
                 "--pairs", "me:random train.balance=classes"]) == 0
    final = list(csv.reader((out / "comparisons_final.csv").open()))
    rows = {row[1]: row[3] for row in final[1:]}
    assert rows == {"random train.balance=classes − random": "7.5",
                    "me − random": "20.0", "me − random train.balance=classes": "12.5"}
    table1 = list(csv.reader((out / "table1_main.csv").open()))  # a row of Table 1 too
    assert [row[0] for row in table1[1:4]] == ["random", "random train.balance=classes", "me"]
    assert main(["report", str(root), "--out", str(tmp_path / "typo"), "--switches",
                 "train.balance", "--pairs", "me:random train.balance=class"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "'random train.balance=class', a row no setup" in error
    assert "random, random train.balance=classes, me" in error
    assert not (tmp_path / "typo").exists()
    for bad in ("train.balanse", "seed", "loop.keep_adapters"):
        assert main(["report", str(root), "--out", str(out), "--switches", bad]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and f"--switches '{bad}' is not a config key" in error


def test_switches_fold_several_keys_in_order_and_plain_values():
    """Each key set off its default joins the row's name in `--switches` order (a bool as YAML
    writes it); a run without the key's section keeps the default and its plain name."""
    both = {"strategy": "me", "config": {"train": {"balance": "classes"}, "loop": {
        "blind_labeling": True}, "uncertainty": {"schedule": "evidence"}}}
    bare = {"strategy": "random", "config": {"loop": {"budget": 16}}}
    fold_switches([both, bare], ["train.balance", "uncertainty.schedule", "loop.blind_labeling"])
    assert both["strategy"] == ("me train.balance=classes uncertainty.schedule=evidence "
                                "loop.blind_labeling=true")
    assert both["config"] == {"train": {}, "loop": {}, "uncertainty": {}}
    assert bare == {"strategy": "random", "config": {"loop": {"budget": 16}}}


def test_a_switch_must_hold_one_plain_value(tmp_path, capsys):
    """A list key is refused before any run is read; a mapping (task.verbalizer, null by
    default) when a run sets it: two verbalizers would otherwise share one row's name."""
    root = switched_runs(tmp_path / "runs")
    assert main(["report", str(root), "--out", str(tmp_path / "r"), "--switches",
                 "lora.target_modules"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--switches 'lora.target_modules' is a list" in error
    run = {"strategy": "random", "path": "runs/x",
           "config": {"task": {"verbalizer": {"0": "no", "1": "yes"}}}}
    with pytest.raises(ConfigError, match=r"'task.verbalizer' is set to \{.*\} in runs/x"):
        fold_switches([run], ["task.verbalizer"])


def test_a_switched_ablation_is_a_row_of_table_2(tmp_path):
    """Table 2 holds the ablations under a switch as their own rows; a `+` in a switch's value
    (bandit.arms is a list, so a string key stands in: the prompt) makes no ablation setup."""
    root = tmp_path / "runs"
    for folder, strategy, balance in (("random", "random", "none"),
                                      ("dyn", "me+dynamic", "none"),
                                      ("balance/dyn", "me+dynamic", "classes")):
        for seed in (0, 1):
            config = {"strategy": strategy, "seed": seed, "task": {"name": "sst2"},
                      "loop": {"budget": 16}, "train": {"balance": balance}}
            rounds = [{"round": k, "n_labeled": 8 * (k + 1), "accuracy": a, "selected_ids": []}
                      for k, a in enumerate([0.5, 0.6 + 0.1 * seed])]
            make_run(root / folder / f"seed{seed}", config, rounds,
                     auc=auc([8, 16], [0.5, 0.6 + 0.1 * seed]))
    out = tmp_path / "report"
    assert main(["report", str(root), "--out", str(out), "--switches", "train.balance"]) == 0
    table2 = list(csv.reader((out / "table2_ablation.csv").open()))
    assert [row[0] for row in table2[1:3]] == ["me+dynamic", "me+dynamic train.balance=classes"]
    plain = tmp_path / "plain"
    for seed in (0, 1):
        config = {"strategy": "random", "seed": seed, "task": {"name": "sst2", "prompt": "a+b"},
                  "loop": {"budget": 8}}
        make_run(plain / "random" / f"seed{seed}", config,
                 [{"round": 0, "n_labeled": 8, "accuracy": 0.5, "selected_ids": []}], auc=0.5)
    assert main(["report", str(plain), "--out", str(tmp_path / "p"), "--switches",
                 "task.prompt"]) == 0
    written = {path.name for path in (tmp_path / "p").iterdir()}
    assert "learning_curves.png" in written and not {
        "table2_ablation.csv", "learning_curves_ablation.png"} & written


def test_a_run_from_before_a_key_groups_with_runs_that_do_what_it_did():
    """A run saved before `guard.select_with` selected with the model handed out: one setup
    with new runs pinned to `handed`, another than new runs under the default `trained`."""
    new = StarConfig().model_dump()
    old = deepcopy(new)
    del old["guard"]["select_with"]
    pinned = deepcopy(new)
    pinned["guard"]["select_with"] = "handed"
    key = {name: setup_key({"task": "SST-2", "config": config})
           for name, config in (("old", old), ("pinned", pinned), ("new", new))}
    assert key["old"] == key["pinned"] != key["new"]
    runs = [{"strategy": "me", "config": old}, {"strategy": "me", "config": new}]
    fold_switches(runs, ["guard.select_with"])
    assert [run["strategy"] for run in runs] == ["me guard.select_with=handed", "me"]


def test_keys_that_change_no_number_split_no_setup():
    """A run that kept only its last adapter, or was renamed, is of the setup of one that kept
    them all; a key that changes numbers still splits."""
    kept = StarConfig().model_dump()
    pruned, renamed, other = deepcopy(kept), deepcopy(kept), deepcopy(kept)
    pruned["loop"]["keep_adapters"] = "last"
    renamed["task"]["title"] = "Reviews"
    other["loop"]["step"] += 1
    key = {name: setup_key({"task": "SST-2", "config": config}) for name, config in
           (("kept", kept), ("pruned", pruned), ("renamed", renamed), ("other", other))}
    assert key["kept"] == key["pruned"] == key["renamed"] != key["other"]


def test_a_run_that_picks_without_the_model_joins_the_runs_that_do(tmp_path):
    """`guard.select_with` says which model scores the pool: random and typiclust read no
    scores, so their runs join the runs that do, whichever value those hold; where those hold
    both values, or differ in another key, a run keeps its own. Runs that pick with the model
    (a measure, or auto's arms) are never changed."""
    new = StarConfig().model_dump()
    old = deepcopy(new)
    del old["guard"]["select_with"]  # read as `handed`
    pinned = deepcopy(new)
    pinned["guard"]["select_with"] = "handed"
    other = deepcopy(new)
    other["train"]["balance"] = "classes"

    def settled(*runs: tuple[str, dict[str, Any]]) -> list[tuple[str, str]]:
        listed = [{"task": "SST-2", "strategy": strategy, "config": deepcopy(config)}
                  for strategy, config in runs]
        settle_picking_keys(listed)
        for run, (_, config) in zip(listed, runs, strict=True):
            if run["strategy"] not in ("random", "typiclust"):
                assert run["config"] == config
        return [setup_key(run) for run in listed]

    random_old, me_new = settled(("random", old), ("me", new))
    assert random_old == me_new
    typiclust_new, auto_old = settled(("typiclust", new), ("auto", old))
    assert typiclust_new == auto_old
    random_old, me_new, me_pinned = settled(("random", old), ("me", new), ("me", pinned))
    assert random_old == me_pinned != me_new
    random_new, me_new, me_pinned = settled(("random", new), ("me", new), ("me", pinned))
    assert random_new == me_new != me_pinned
    random_new, me_other = settled(("random", new), ("me", other))
    assert random_new != me_other and random_new == setup_key({"task": "SST-2", "config": new})
    auto_new, me_old = settled(("auto", new), ("me", old))
    assert auto_new != me_old

    root = tmp_path / "runs"
    for strategy, seed, config in (("random", 0, old), ("random", 1, old), ("me", 0, new)):
        config = {**config, "strategy": strategy, "seed": seed, "loop": {**config["loop"],
                  "budget": 8}, "task": {**config["task"], "name": "sst2"}}
        make_run(root / strategy / f"seed{seed}", config,
                 [{"round": 0, "n_labeled": 8, "accuracy": 0.5, "selected_ids": []}], auc=0.5)
    assert len({run["setup"] for run in collect_runs(root)}) == 1
