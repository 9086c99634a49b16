"""`star noise` on a run of the tiny model: retrains a round's labels under other training
seeds, reproduces the run under its own, resumes, and refuses bad input in one line."""

from __future__ import annotations

import json

import pytest
import torch

import star.active.loop as loop
from star.active.loop import Experiment
from star.config import load_config
from star.model.lora import adapter_state
from star.results.summary import collect_runs, noise_rows
from star.seeding import derived_seed
from star.tools import noise as noise_tool
from star.tools.cli import main
from tests.test_loop import sets
from tests.test_report_setups import make_run


@pytest.fixture
def run(tiny_overrides, tmp_path):
    """A two-round random run (8 and 16 labels, 16 test examples), fresh adapter each round."""
    out = tmp_path / "runs" / "random" / "seed0"
    assert main(["run", "--strategy", "random", "--seed", "0", "--out", str(out),
                 *sets([*tiny_overrides, "loop.budget=16", "train.init=fresh"])]) == 0
    return out


def test_retraining_under_the_runs_own_seed_reproduces_its_round(run):
    """The labels in force, the recipe, the test set and the evaluation are the run's: trained
    from the run's initial adapter with the run's seed, round 1 gives the run's accuracy."""
    results = json.loads((run / "results.json").read_text())
    experiment = Experiment(load_config(run / "config.yaml"), run)
    experiment.results = results
    start = experiment.initial_adapter
    scores = noise_tool.retrain(experiment, 1, start, seed=0)
    assert scores == {key: results["rounds"][1][key] for key in ("accuracy", "macro_f1")}
    trained = adapter_state(experiment.loaded.model)
    noise_tool.retrain(experiment, 1, start, seed=1)  # another data order and dropout
    other = adapter_state(experiment.loaded.model)
    assert any(not torch.equal(trained[name], other[name]) for name in trained)
    noise_tool.retrain(experiment, 1, start, seed=0)
    again = adapter_state(experiment.loaded.model)
    assert all(torch.equal(trained[name], again[name]) for name in trained)


def test_a_retrain_where_no_draw_fits_is_the_base_model(run, monkeypatch):
    """Under `train.retries`, a retrain whose draws all fit their labels worse than the base
    model (forced) gives what the run would hand out there: the zero-shot accuracy."""
    results = json.loads((run / "results.json").read_text())
    experiment = Experiment(load_config(run / "config.yaml"), run)
    experiment.results = results
    experiment.config = experiment.config.model_copy(
        update={"train": experiment.config.train.model_copy(update={"retries": 1})})
    monkeypatch.setattr(loop, "held_out_score", lambda correct, classes: 0.0)  # all tie: fit
    fitted = noise_tool.retrain(experiment, 1, experiment.initial_adapter, seed=0)
    assert fitted["accuracy"] == results["rounds"][1]["accuracy"]
    scores = iter([0.9, 0.1, 0.2])  # the base model's, then the two draws'
    monkeypatch.setattr(loop, "held_out_score", lambda correct, classes: next(scores))
    assert noise_tool.retrain(experiment, 1, experiment.initial_adapter, seed=0)["accuracy"] == \
        results["baselines"]["zero_shot"]


def test_new_initial_adapters_depend_on_their_seed_alone(run):
    experiment = Experiment(load_config(run / "config.yaml"), run)
    first, second, repeat = (noise_tool.initial_adapter(experiment.loaded, seed)
                             for seed in (1, 2, 1))
    a_weights = [name for name in first if "lora_A" in name]
    b_weights = [name for name in first if "lora_B" in name]
    assert a_weights and b_weights
    assert all(torch.equal(first[name], repeat[name]) for name in first)
    assert not any(torch.equal(first[name], second[name]) for name in a_weights)
    assert all(not first[name].any() for name in b_weights)  # B starts at zero, as PEFT's


def test_noise_retrains_writes_resumes_and_reaches_the_report(run, monkeypatch, capsys):
    assert main(["noise", str(run), "--round", "1", "--train-seeds", "2"]) == 0
    record = json.loads((run / "rounds" / "1" / "noise.json").read_text())
    results = json.loads((run / "results.json").read_text())
    assert (record["round"], record["n_labeled"], record["test_size"]) == (1, 16, 16)
    assert record["run_accuracy"] == results["rounds"][1]["accuracy"]
    assert record["run_macro_f1"] == results["rounds"][1]["macro_f1"]
    assert [r["training_seed"] for r in record["retrains"]] == [
        derived_seed(0, 1, "noise_train", part=j) for j in (0, 1)]
    for retrain in record["retrains"]:
        assert (16 * retrain["accuracy"]).is_integer()  # a share of the 16 test examples
        assert 0 <= retrain["macro_f1"] <= 1
    out = capsys.readouterr().out
    assert "under 2 training seeds; accuracy: the run's" in out and "; macro-F1: the run's" in out
    calls = []
    real = noise_tool.retrain
    monkeypatch.setattr(noise_tool, "retrain", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    assert main(["noise", str(run), "--round", "1", "--train-seeds", "3"]) == 0
    assert calls == [derived_seed(0, 1, "noise_train", part=2)]  # the first two are kept
    again = json.loads((run / "rounds" / "1" / "noise.json").read_text())
    assert again["retrains"][:2] == record["retrains"] and len(again["retrains"]) == 3
    (_, row) = noise_rows(collect_runs(run.parents[1]))
    assert (row["n_labeled"], row["train_runs"]) == (16, 1)


def test_bad_noise_input_is_one_line_and_exit_code_2(tmp_path, capsys):
    folder = tmp_path / "run"
    make_run(folder, {"strategy": "random", "seed": 0, "task": {"name": "sst2"}},
             [{"round": 0, "n_labeled": 8, "accuracy": 0.5, "selected_ids": []}], auc=0.5)
    for args, message in ((["--round", "5"], f"--round 5: '{folder}' has rounds 0 to 0"),
                          ([], "is not a run folder (no config.yaml)")):
        target = folder if args else tmp_path / "elsewhere"
        assert main(["noise", str(target), *args]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1
    guarded = tmp_path / "guarded"
    make_run(guarded, {"strategy": "random", "seed": 0, "task": {"name": "sst2"}},
             [{"round": 0, "n_labeled": 8, "accuracy": 0.5, "selected_ids": [],
               "guard": {"chosen": "base"}}], auc=0.5)
    assert main(["noise", str(guarded), "--round", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert "the run handed out the base model there" in error and len(error.splitlines()) == 1
    unfitted = tmp_path / "unfitted"  # no training draw fitted its labels
    make_run(unfitted, {"strategy": "random", "seed": 0, "task": {"name": "sst2"}},
             [{"round": 0, "n_labeled": 8, "accuracy": 0.5, "selected_ids": [], "guard": None,
               "fit": {"draws": [0.4, 0.5], "kept": 1, "base": 0.6}}], auc=0.5)
    assert main(["noise", str(unfitted), "--round", "0"]) == 2
    assert "the run handed out the base model there" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_code:
        main(["noise", str(folder), "--train-seeds", "1"])
    assert exit_code.value.code == 2 and "must be at least 2" in capsys.readouterr().err


def test_the_summary_line_shows_macro_f1_only_where_every_retrain_has_it(tmp_path):
    """A record begun before macro-F1 was kept goes on with accuracy alone in its line."""
    record = {"round": 7, "n_labeled": 128, "test_size": 872, "run_accuracy": 0.75,
              "run_macro_f1": 0.7, "retrains": [{"accuracy": 0.8, "macro_f1": 0.6},
                                                {"accuracy": 0.7, "macro_f1": 0.8}]}
    line = noise_tool.describe(record, tmp_path)
    assert line.startswith("round 7 (128 labels, 872 test examples), under 2 training seeds; ")
    assert "accuracy: the run's 75.00, retrained 80.00, 70.00, SD 7.07 points" in line
    assert "macro-F1: the run's 70.00, retrained 60.00, 80.00, SD 14.14 points" in line
    del record["retrains"][0]["macro_f1"]
    assert "macro-F1" not in noise_tool.describe(record, tmp_path)
