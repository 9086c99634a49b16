"""`star report` and the probes on run folders made by the tiny test model."""

import csv
import json
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest

from star.active.runfolder import RunFolder, complete_rounds
from star.config import load_config
from star.data.sources import load_task
from star.model.loading import load_model
from star.model.passes import choice_outputs
from star.results.figures import reflected_density
from star.results.metrics import expected_calibration_error, ripl
from star.results.summary import calibration_at, collect_runs, matched_seeds, summarize
from star.results.tables import FOLD_ROWS, Cell, Table, _marks
from star.tools.cli import main
from star.tools.probes import _wrong_confidence_difference
from tests.conftest import tiny_settings
from tests.test_loop import read_jsonl, sets


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, tiny_model_dir, toy_data_dir):
    """random, me, me-star and one ablation over two seeds on the toy task."""
    out = tmp_path_factory.mktemp("runs")
    overrides = [o for o in tiny_settings(tiny_model_dir, toy_data_dir) if "budget" not in o]
    overrides.append("loop.budget=32")
    code = main(["compare", "--strategies", "random,me,me-star,me+dynamic", "--seeds", "0,1",
                 "--out", str(out), *sets(overrides)])
    assert code == 0
    return out


def test_report_writes_html_markdown_figures_and_tables(runs_dir, tmp_path, toy_data_dir):
    out = tmp_path / "report"
    assert main(["report", str(runs_dir), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    assert html.count("data:image/png;base64,") >= 4  # curves, calibration, reliability, selection
    assert "src='learning_curves.png'" not in html  # self-contained
    for name in ("learning_curves.png", "calibration.png", f"reliability_{toy_data_dir.name}.png",
                 f"selection_{toy_data_dir.name}.png", "learning_curves_ablation.png",
                 "calibration_ablation.png"):
        assert (out / name).stat().st_size > 1000
        assert f"({name})" in markdown
    with (out / "table1_main.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0][0] == "Method" and [r[0] for r in rows[1:]] == [
        "random", "me", "me-star", "chance", "majority", "zero-shot"]
    ablation = list(csv.reader((out / "table2_ablation.csv").open()))
    assert [r[0] for r in ablation[1:]] == ["me", "me+dynamic", "me-star", "chance", "majority",
                                            "zero-shot"]
    for name in ("calibration_ece.csv", "calibration_brier.csv"):
        calibration = list(csv.reader((out / name).open()))
        assert calibration[0] == ["Task", "Method", "Seeds", *[f"{n} labels" for n in (8, 16, 24, 32)]]
        assert len(calibration) == 1 + 4  # four strategies, four rounds each (8 to 32 labels)
    selection = list(csv.reader((out / "selection.csv").open()))
    assert {r[1] for r in selection[1:]} == {"me-star", "me+dynamic"}
    ece = list(csv.reader((out / "comparisons_ece.csv").open()))
    assert [r[1] for r in ece[1:]] == ["me − random", "me+dynamic − random", "me-star − random"]
    assert "<b>" in html
    runs = {(r["strategy"], r["seed"]): r for r in collect_runs(runs_dir)}
    each = list(csv.reader((out / "per_seed.csv").open()))
    assert each[0] == ["Setup", "Method", "Seed", "AUC", "RIPL", "gain over zero-shot",
                       "last-round accuracy", "last-round ECE"]
    assert [(r[1], r[2]) for r in each[1:]] == [
        (s, seed) for s in ("random", "me", "me+dynamic", "me-star") for seed in ("0", "1")]
    me, random = runs[("me", 1)], runs[("random", 1)]
    assert [float(v) for v in each[4][3:6]] == pytest.approx(
        [100 * me["auc"], 100 * ripl(me["auc"], random["auc"]),
         100 * (me["auc"] - me["baselines"]["zero_shot"])], abs=1e-4)
    assert float(each[4][6]) == pytest.approx(100 * complete_rounds(me)[-1]["accuracy"], abs=1e-4)
    assert each[1][4] == "–"  # random has no RIPL against itself


def test_summary_ripl_uses_random_of_the_same_seed(runs_dir):
    runs = collect_runs(runs_dir)
    summary = summarize(runs)
    task = next(iter(summary))
    by = {(r["strategy"], r["seed"]): r["auc"] for r in runs}
    expected = [ripl(by[("me", s)], by[("random", s)]) for s in (0, 1)]
    assert summary[task]["me"]["ripl_mean"] == pytest.approx(sum(expected) / 2)
    assert summary[task]["me"]["ripl_per_seed"] == pytest.approx(expected)
    assert summary[task]["me"]["auc_per_seed"] == pytest.approx([by[("me", s)] for s in (0, 1)])
    last_ece = {(r["strategy"], r["seed"]): calibration_at(r, r["rounds"][-1])[0] for r in runs}
    assert summary[task]["me"]["ece_last_per_seed"] == pytest.approx(
        [last_ece[("me", s)] for s in (0, 1)])


def test_report_of_an_empty_folder_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "no run folders" in capsys.readouterr().err


def test_entropy_probe(runs_dir, tmp_path, capsys):
    out = tmp_path / "probe"
    assert main(["probe", "entropy", str(runs_dir / "me-star" / "seed0"), "--top", "20",
                 "--out", str(out)]) == 0
    result = json.loads((out / "probe_entropy.json").read_text())
    assert result["iterations"] == ["iter 0 (base)", "iter 1", "iter 2", "iter 3"]
    # rebuilt from the run's scores: the 20 most base-uncertain of the examples every scored
    # round left unlabeled (ties by id), then Pearson's r between the columns
    run = runs_dir / "me-star" / "seed0"
    scores = {k: {row["id"]: row for row in map(json.loads, (run / "rounds" / str(k) / "scores.jsonl")
                                                .read_text().splitlines())} for k in (1, 2, 3)}
    common = sorted(set(scores[1]) & set(scores[2]) & set(scores[3]))
    ids = sorted(common, key=lambda i: -scores[1][i]["base"])[:20]
    assert result["top"] == 20 and result["ids"] == ids
    columns = [[scores[1][i]["base"] for i in ids], *[[scores[k][i]["full"] for i in ids] for k in (1, 2, 3)]]
    assert np.array(result["correlation"]) == pytest.approx(np.corrcoef(columns), abs=1e-9)
    # Fig. 3's two claims with intervals: Fisher's z, atanh r ± 1.96 / √(20 − 3)
    pairs = {"base_with_each": [(0, k) for k in (1, 2, 3)], "consecutive": [(0, 1), (1, 2), (2, 3)]}
    for key, indices in pairs.items():
        for estimate, (a, b) in zip(result[key], indices, strict=True):
            r = np.corrcoef(columns[a], columns[b])[0, 1]
            assert estimate["value"] == pytest.approx(r, abs=1e-9) and estimate["count"] == 20
            assert (estimate["low"], estimate["high"]) == pytest.approx(
                (math.tanh(math.atanh(r) - 1.959964 / math.sqrt(17)),
                 math.tanh(math.atanh(r) + 1.959964 / math.sqrt(17))), abs=1e-6)
            assert 0 <= estimate["p_value"] <= 1
    assert (out / "entropy_correlation.png").exists() and (out / "entropy_scatter_0_1.png").exists()
    # a plain `me` run has no base column in its scores: the probe computes it
    assert main(["probe", "entropy", str(runs_dir / "me" / "seed0"), "--top", "20",
                 "--out", str(tmp_path / "p2")]) == 0
    assert main(["probe", "entropy", str(runs_dir / "random" / "seed0"),
                 "--out", str(tmp_path / "p3")]) == 2
    assert "random run" in capsys.readouterr().err


def test_entropy_probe_scores_the_base_model_with_the_runs_measure(runs_dir, tmp_path):
    """A run without a base column: the probe scores the base model itself, with the run's own
    measure (here the `me` run relabelled `lc`), not ME for every strategy that is not PE."""
    run = tmp_path / "lc"
    shutil.copytree(runs_dir / "me" / "seed0", run)
    config_path = run / "config.yaml"
    config_path.write_text(config_path.read_text().replace("strategy: me\n", "strategy: lc\n"))
    assert main(["probe", "entropy", str(run), "--top", "20", "--out", str(tmp_path / "p")]) == 0
    result = json.loads((tmp_path / "p" / "probe_entropy.json").read_text())
    config = load_config(config_path)
    task, loaded = load_task(config.task), load_model(config.model)
    by_id = {e.id: e for e in task.train}
    lc = choice_outputs(loaded, task, [by_id[i] for i in result["ids"]], batch_size=16,
                        max_length=config.model.max_length)
    probs = np.exp(lc.label_logprob[0])
    expected = 1 - (probs / probs.sum(axis=1, keepdims=True)).max(axis=1)  # 1 − max p over labels
    assert result["measure"] == "lc"
    assert result["uncertainty"][0] == pytest.approx(expected.tolist(), abs=1e-5)


def test_confidence_probe_from_a_run_and_trained(runs_dir, tmp_path):
    out = tmp_path / "conf"
    assert main(["probe", "confidence", "--run", str(runs_dir / "me-star" / "seed0"),
                 "--shots", "2", "--renormalised", "--out", str(out)]) == 0
    result = json.loads((out / "probe_confidence.json").read_text())
    for key in ("few_shot", "lora"):
        stats = result[key]
        assert 0 <= stats["accuracy"] <= 1 and 0 <= stats["ece"] <= 1
        assert len(stats["wrong_confidence"]) == round((1 - stats["accuracy"]) * 16)
        assert all(0.5 <= c <= 1 for c in stats["wrong_confidence"])  # two labels, renormalised
        assert set(stats["predicted_counts"]) == {"yes", "no"}  # every label, answered or not
        assert sum(stats["predicted_counts"].values()) == 16
    assert (out / "confidence_density.png").exists() and (out / "predicted_classes.png").exists()
    # the LoRA row is the run's last adapter on the run's test subsample: its accuracy and ECE
    # (renormalised, as the loop's calibration) are those the run recorded for its last round
    (run,) = [r for r in collect_runs(runs_dir) if r["strategy"] == "me-star" and r["seed"] == 0]
    last = run["rounds"][-1]
    assert result["lora"]["accuracy"] == pytest.approx(last["accuracy"])
    assert result["lora"]["ece"] == pytest.approx(calibration_at(run, last)[0])
    # the few-shot row by hand: the base model (no adapter) on the run's test examples, each
    # prompt after the probe's demonstrations (prompt + gold response + a blank line each);
    # confidence = the largest label probability, raw or renormalised over the labels
    run_config = load_config(runs_dir / "me-star" / "seed0" / "config.yaml")
    task = load_task(run_config.task)
    test_by_id, train_by_id = {e.id: e for e in task.test}, {e.id: e for e in task.train}
    test = [test_by_id[row["id"]] for row in read_jsonl(
        RunFolder(runs_dir / "me-star" / "seed0").predictions_path(last["round"]))]
    assert len(test) == 16
    prefix = "".join(train_by_id[i].prompt + train_by_id[i].response + "\n\n"
                     for i in result["demonstrations"])
    shots = [replace(e, prompt=prefix + e.prompt) for e in test]
    base = choice_outputs(load_model(run_config.model), task, shots, batch_size=16,
                          max_length=run_config.model.max_length)
    probs = np.exp(base.label_logprob[0])
    if result["confidence"] != "raw":
        probs /= probs.sum(axis=1, keepdims=True)
    confidence = probs.max(axis=1)
    correct = np.array([task.labels[p] == e.gold for p, e in zip(probs.argmax(axis=1), test,
                                                                   strict=True)])
    few = result["few_shot"]
    assert few["accuracy"] == pytest.approx(correct.mean())
    assert few["ece"] == pytest.approx(expected_calibration_error(confidence, correct), abs=1e-9)
    assert sorted(few["wrong_confidence"]) == pytest.approx(sorted(confidence[~correct]), abs=1e-9)
    # Fig. 2's claim as a number with its interval: LoRA's mean CF on wrong answers − few-shot's
    difference = result["wrong_confidence_lora_minus_few_shot"]
    assert difference["value"] == pytest.approx(
        np.mean(result["lora"]["wrong_confidence"]) - confidence[~correct].mean(), abs=1e-9)
    assert difference["low"] < difference["value"] < difference["high"]
    assert difference["count"] == len(result["lora"]["wrong_confidence"]) + (~correct).sum()
    config = runs_dir / "me" / "seed0" / "config.yaml"
    assert main(["probe", "confidence", str(config), "--train-size", "8",
                 "--out", str(tmp_path / "conf2")]) == 0
    raw = json.loads((tmp_path / "conf2" / "probe_confidence.json").read_text())
    assert raw["confidence"] == "raw"  # the paper's Eq. 4 by default: max(p_yes, p_no), raw
    assert raw["lora_source"] == "LoRA trained on 8 random labels"
    assert all(0 <= c <= 1 for key in ("few_shot", "lora") for c in raw[key]["wrong_confidence"])
    # the demonstrations have their own draw: training a LoRA first does not change them, and
    # 2 shots are the first 2 of the default number
    assert len(result["demonstrations"]) == 2 and len(set(raw["demonstrations"])) > 2
    assert raw["demonstrations"][:2] == result["demonstrations"]


def test_a_model_with_one_wrong_answer_gets_no_confidence_interval():
    """Welch's test needs two wrong answers a side; with fewer the probe records no difference."""
    one, two = {"wrong_confidence": [0.9]}, {"wrong_confidence": [0.6, 0.7]}
    assert _wrong_confidence_difference(one, two) is None
    assert _wrong_confidence_difference(two, {"wrong_confidence": [0.5, 0.55]}).value == \
        pytest.approx(0.125)


def test_confidence_density_keeps_its_mass_inside_the_support():
    grid = np.linspace(0.5, 1.0, 2001)
    density = reflected_density([0.5, 0.52, 0.55, 0.6, 0.99, 1.0], grid, (0.5, 1.0))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)


def test_best_and_second_marks_share_ties():
    assert _marks({"a": 0.5, "b": 0.5, "c": 0.4001, "d": 0.3, "e": None}) == \
        {"a": "best", "b": "best", "c": "second"}


def test_a_long_table_is_folded_in_the_report_and_whole_in_its_csv(tmp_path):
    def table(n_rows: int) -> Table:
        return Table("labels", "Labels", ["Round"], [[Cell(str(k), k)] for k in range(n_rows)],
                     note="A note.")

    short, long = table(FOLD_ROWS), table(FOLD_ROWS + 1)
    assert "<details>" not in short.markdown(fold=True) + short.html()
    folded = long.markdown(fold=True).splitlines()
    assert folded[0] == f"<details><summary>{FOLD_ROWS + 1} rows: show them (or read labels.csv)" \
        "</summary>"
    assert folded[-3:] == ["</details>", "", "A note."]  # the note stays in view
    assert "<details>" not in long.markdown()  # the terminal's table of `star compare`
    assert long.html().startswith("<details><summary>") and long.html().endswith("A note.</p>")
    long.write_csv(tmp_path / "labels.csv")
    assert len((tmp_path / "labels.csv").read_text().splitlines()) == FOLD_ROWS + 2


def test_ablation_table_uses_the_seeds_every_row_has():
    runs = [{"task": "T", "strategy": s, "seed": k} for s, seeds in
            (("me", (0, 1, 2)), ("me+dynamic", (0, 1)), ("random", (0, 1, 2)), ("pe", (2,)))
            for k in seeds]
    kept = matched_seeds(runs, ["me", "me+dynamic"])
    assert sorted((r["strategy"], r["seed"]) for r in kept) == [
        ("me", 0), ("me", 1), ("me+dynamic", 0), ("me+dynamic", 1), ("random", 0), ("random", 1)]


def test_report_leaves_out_unfinished_runs(runs_dir, tmp_path, capsys):
    copy = tmp_path / "runs"
    shutil.copytree(runs_dir, copy)
    results = copy / "me" / "seed0" / "results.json"
    data = json.loads(results.read_text())
    data["rounds"] = data["rounds"][:2]  # stopped after 16 of 24 labels
    results.write_text(json.dumps(data))
    kept = {(r["strategy"], r["seed"]) for r in collect_runs(copy)}
    assert ("me", 0) not in kept and ("me", 1) in kept and len(kept) == 7
    captured = capsys.readouterr()
    assert "skipping unfinished run" in captured.err + captured.out


def test_selection_figure_keeps_measures_apart_and_names_shared_schedules(tmp_path, monkeypatch):
    """ME and PE get their own panels (their scales differ); me-star and pe-star follow the
    same λ(t), drawn once under both names; μ_b is dashed in the plot and in its legend."""
    from star.results import figures

    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig))
    rows = [{"setup": "SST-2", "strategy": name, "seed": seed, "round": k, "lambda": 1 - 0.1 * k,
             "base_mean": scale * k, "full_mean": scale * (k + 1), "overlap_base_full": 0.5,
             "overlap_base_mixed": 0.75, "overlap_full_mixed": 0.25}
            for name, scale in (("me-star", 1.0), ("pe-star", 40.0)) for seed in (0, 1)
            for k in (1, 2, 3)]
    rows += [{**row, "strategy": "margin+dynamic", "seed": 0} for row in rows[:2]]  # unfinished
    figures.plot_selection(rows, "SST-2", tmp_path / "selection.png")
    pe, me, margin, schedule, overlap = drawn[0].axes  # in the tables' order: PE first
    assert "ME" in me.get_title() and me.get_ylabel() == "mean ME (nats)"
    assert "PE" in pe.get_title() and pe.get_ylabel() == "mean PE (nats)"
    assert [line.get_ydata().tolist() for line in pe.lines] == [[40.0, 80.0, 120.0],
                                                                [80.0, 120.0, 160.0]]
    assert margin.get_ylabel() == "mean MARGIN"  # a difference of probabilities, no nats
    assert [line.get_label() for line in schedule.lines] == ["pe-star, me-star", "margin+dynamic"]
    assert schedule.lines[0].get_ydata() == pytest.approx([0.9, 0.8, 0.7])
    legend = {text.get_text(): handle for text, handle
              in zip(me.get_legend().get_texts(), me.get_legend().legend_handles, strict=True)}
    assert legend["me-star μ_b"].get_linestyle() == "--"
    assert legend["me-star μ_f"].get_linestyle() == "-"
    assert len(overlap.lines) == 9 and overlap.get_ylabel() == "overlap (%)"


def test_selection_rows_by_hand(tmp_path):
    """Four pool examples, k = 2, three MC passes: the overlaps of the top-k sets, and what
    the passes changed (their mean correlation, the first pass's top k against the mean's)."""
    from star.active.runfolder import RunFolder
    from star.results.summary import selection_rows
    from star.results.tables import selection_table

    passes = [[1, 4, 3, 2], [1, 2, 3, 4], [1, 2, 3, 4]]  # μ_f = their mean: 1, 8/3, 3, 10/3
    rows = [{"id": name, "base": base, "passes": [p[i] for p in passes],
             "full": float(np.mean([p[i] for p in passes])), "score": score, "selected": picked}
            for i, (name, base, score, picked) in enumerate(
                [("a", 4, 0.1, False), ("b", 3, 0.9, True), ("c", 2, 0.8, True),
                 ("d", 1, 0.2, False)])]
    folder = RunFolder(tmp_path)
    folder.scores_path(1).parent.mkdir(parents=True)
    folder.scores_path(1).write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = {"task": "T", "setup": "T", "strategy": "me-star", "seed": 0, "path": str(tmp_path),
           "rounds": [{"round": 0}, {"round": 1}], "lambda": {"1": 0.8}}
    [row] = selection_rows([run])
    # top 2: base {a, b}, full {c, d}, mixed {b, c}
    assert (row["overlap_base_full"], row["overlap_base_mixed"], row["overlap_full_mixed"]) == (
        0.0, 0.5, 0.5)
    # centred passes: (-1.5, 1.5, .5, -.5) and (-1.5, -.5, .5, 1.5) twice; r = 1/5, 1/5, 1
    assert row["mc_pass_r"] == pytest.approx(1.4 / 3)
    assert row["overlap_pass_mean"] == 0.5  # pass 1 ranks {b, c}, the mean {c, d}
    assert row["lambda"] == 0.8

    for r in rows:
        r["passes"] = r["passes"][:1]
        r["full"] = r["passes"][0]
    folder.scores_path(1).write_text("".join(json.dumps(r) + "\n" for r in rows))
    [one_pass] = selection_rows([run])
    assert one_pass["mc_pass_r"] is None and one_pass["overlap_pass_mean"] is None
    table = selection_table([row, {**one_pass, "strategy": "me+dynamic"}])
    assert [cell.text for cell in table.rows[0][-2:]] == ["–", "–"]  # me+dynamic comes first
    assert [cell.text for cell in table.rows[1][4:]] == [
        "2.500", "2.500", "-0.91", "0 %", "50 %", "50 %", "0.467", "50 %"]  # r: -3.67/√(5·3.22)
