"""Training a round again when its adapter does not fit its own labels (`train.retries`): the
rule, the draws it trains and keeps, and the loop recording, resuming and reporting them."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

import star.active.loop as loop
import star.active.refit as refit
from star.active.loop import Experiment
from star.active.prompt_guard import BASE, TUNED, held_out_score
from star.active.refit import FitCheck, Refit, best_draw, fits, handed_out, train_until_fit
from star.active.runfolder import RunFolder
from star.config import load_config
from star.model.lora import ADAPTER_WEIGHTS, load_adapter
from star.results.summary import fit_rows
from star.seeding import derived_seed
from star.tools.cli import main
from star.tools.labels import status


def test_an_adapter_fits_when_it_scores_at_least_the_base_model():
    assert fits(0.70, 0.70)  # a tie keeps the adapter: it trained on the labels
    assert fits(0.71, 0.70)
    assert not fits(0.69, 0.70)


def test_under_a_chance_bar_an_adapter_must_also_beat_chance():
    """The 2 % pool's round at 64 labels: the base model 0.44 on them, under chance (one
    negative, which it got wrong), the collapsed adapter at chance, 0.5."""
    assert fits(0.50, 0.44)  # without the bar it passed
    assert not fits(0.50, 0.44, chance=0.5)  # at chance tells no class apart
    assert fits(0.51, 0.44, chance=0.5)
    assert not fits(0.49, 0.50, chance=0.25)  # the base model's bar still holds
    assert not fits(1.0, 0.875, chance=1.0)  # labels of one class: nothing beats chance


def test_the_best_draw_is_the_highest_score_and_the_earliest_among_equals():
    assert best_draw([0.5, 0.7, 0.7, 0.6]) == 1
    assert best_draw([0.7, 0.5, 0.7]) == 0
    assert best_draw([0.2, 0.1, 0.3]) == 2
    assert best_draw([0.4]) == 0


class FakeRound:
    """A round whose draw under seed s scores `scores[s]`; the adapter "in place" is the seed
    of the draw last trained or restored."""

    def __init__(self, scores: dict[int, float]) -> None:
        self.scores = scores
        self.in_place: int | None = None
        self.trained: list[int] = []
        self.snapshots = 0

    def train(self, seed: int) -> float:
        self.trained.append(seed)
        self.in_place = seed
        return self.scores[seed]

    def snapshot(self) -> int | None:
        self.snapshots += 1
        return self.in_place

    def restore(self, state: int) -> None:
        self.in_place = state

    def refit(self) -> Refit[int | None]:
        return Refit(self.train, self.snapshot, self.restore)


@pytest.mark.parametrize(("scores", "trained", "kept", "snapshots"), [
    ([0.60, 0.90, 0.90], [10], 0, 0),  # the first draw fits: nothing else trains or is copied
    ([0.50, 0.90, 0.90], [10], 0, 0),  # a tie with the base model fits
    ([0.40, 0.60, 0.90], [10, 11], 1, 1),  # the first draw that fits is kept, not a better later
    ([0.45, 0.30, 0.20], [10, 11, 12], 0, 2),  # none fits: the best goes back in place
    ([0.30, 0.45, 0.20], [10, 11, 12], 1, 2),
    ([0.30, 0.20, 0.45], [10, 11, 12], 2, 2),  # the last is best: it is in place already
])
def test_draws_train_until_one_fits_and_the_kept_one_is_in_place(scores, trained, kept,
                                                                 snapshots):
    fake = FakeRound(dict(zip([10, 11, 12], scores, strict=True)))
    check = train_until_fit(fake.refit(), [10, 11, 12], 0.5, metric="balanced_accuracy")
    assert fake.trained == trained
    assert check == FitCheck("balanced_accuracy", 0.5, trained, scores[: len(trained)], kept)
    assert check.retried == (len(trained) > 1)
    assert fake.in_place == trained[kept]
    assert fake.snapshots == snapshots  # the last draw needs no copy: nothing replaces it


def test_one_seed_trains_one_draw_whatever_it_scores():
    fake = FakeRound({10: 0.1})
    check = train_until_fit(fake.refit(), [10], 0.5, metric="accuracy")
    assert (fake.trained, check.kept, fake.snapshots) == ([10], 0, 0)
    assert check.to_dict() == {"metric": "accuracy", "base": 0.5, "seeds": [10],
                               "draws": [0.1], "kept": 0, "chance": None}


@pytest.mark.parametrize(("scores", "trained", "kept"), [
    ([0.50, 0.90], [10, 11], 1),  # at chance, though above the base model: trained again
    ([0.55, 0.90], [10], 0),
    ([0.40, 0.50, 0.45], [10, 11, 12], 1),  # none beats chance: the best, handed out as base
])
def test_a_draw_at_chance_trains_again(scores, trained, kept):
    fake = FakeRound(dict(zip([10, 11, 12], scores, strict=False)))
    check = train_until_fit(fake.refit(), [10, 11, 12], 0.3, metric="balanced_accuracy",
                            chance=0.5)
    assert (fake.trained, check.kept, check.chance) == (trained, kept, 0.5)
    assert check.fitted == (scores[kept] > 0.5)


def test_labels_of_one_class_train_one_draw_whatever_the_seeds():
    fake = FakeRound({10: 1.0, 11: 1.0})
    check = train_until_fit(fake.refit(), [10, 11], 0.9, metric="balanced_accuracy", chance=1.0)
    assert fake.trained == [10] and not check.fitted


# -- the loop ----------------------------------------------------------------------------------
def run(out: Path, overrides: list[str], strategy: str = "me") -> dict:
    sets = [part for item in overrides for part in ("--set", item)]
    assert main(["run", "--strategy", strategy, "--seed", "0", "--out", str(out), *sets]) == 0
    return json.loads((out / "results.json").read_text())


def adapter(out: Path, k: int) -> dict[str, np.ndarray]:
    weights = load_file(RunFolder(out).adapter_dir(k) / ADAPTER_WEIGHTS)
    return {name: value.numpy() for name, value in weights.items()}


def same_adapter(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a)


def test_a_run_whose_first_draws_fit_is_the_run_without_retries(tiny_overrides, tmp_path,
                                                                monkeypatch):
    """Every round checks its fit, and where the first draw fits the round is the unretried
    round number for number: the same selections, accuracy and adapters."""
    overrides = [*tiny_overrides, "train.lr=1e-2"]
    plain = run(tmp_path / "plain", overrides)
    monkeypatch.setattr(refit, "fits", lambda tuned, base, chance=None: True)
    checked = run(tmp_path / "checked", [*overrides, "train.retries=2"])
    for a, b in zip(plain["rounds"], checked["rounds"], strict=True):
        assert a["fit"] is None
        assert b["fit"]["seeds"] == [0] and b["fit"]["kept"] == 0
        assert (a["accuracy"], a["selected_ids"]) == (b["accuracy"], b["selected_ids"])
        assert same_adapter(adapter(tmp_path / "plain", a["round"]),
                            adapter(tmp_path / "checked", b["round"]))


def test_the_fit_is_scored_on_the_labels_as_the_guard_scores_the_base_model(tiny_overrides,
                                                                           tmp_path):
    """The base model's score on the labels so far is the prompt guard's (same labels, same
    balanced accuracy), and each draw's score is the kept adapter's answers on those labels."""
    out = tmp_path / "r"
    results = run(out, [*tiny_overrides, "train.lr=1e-2", "train.retries=1", "guard.folds=2",
                        "guard.min_per_class=0", "guard.max_labels=16"])
    for entry in results["rounds"][:2]:
        assert entry["fit"]["base"] == entry["guard"]["base"]
        assert entry["fit"]["metric"] == entry["guard"]["metric"] == "balanced_accuracy"
    # The last round (24 labels, past guard.max_labels) hands out its kept draw: its answers
    # on the 24 labels, scored again here, are the draw's recorded score.
    last = results["rounds"][-1]
    experiment = Experiment(load_config(out / "config.yaml"), out)
    experiment.labeled = [i for entry in results["rounds"] for i in entry["selected_ids"]]
    labels = {i: answer.value
              for i, answer in experiment.folder.journal.in_force(experiment.labeled).items()}
    examples = experiment.labeled_examples(labels)
    load_adapter(experiment.loaded.model, experiment.folder.adapter_dir(last["round"]))
    answers = experiment.predict(examples)
    assert len(examples) == last["n_labeled"] == 24
    assert last["fit"]["draws"][last["fit"]["kept"]] == held_out_score(
        [bool(a.correct) for a in answers], [e.gold for e in examples])


def scores_per_round(monkeypatch, scores: list[float]) -> None:
    """Each round's fit scores as given, in the order the loop asks: the base model's first,
    then each draw's (the real rule then decides)."""
    asked = itertools.cycle(scores)
    monkeypatch.setattr(loop, "held_out_score", lambda correct, classes: next(asked))


def timeless(rounds: list[dict]) -> list[dict]:
    return [{key: value for key, value in entry.items() if not key.endswith("seconds")}
            for entry in rounds]


def stop_after_round_0(out: Path) -> None:
    results = json.loads((out / "results.json").read_text())
    results["rounds"] = results["rounds"][:1]
    (out / "results.json").write_text(json.dumps(results))
    for later in (1, 2):
        shutil.rmtree(out / "rounds" / str(later))


def test_a_round_that_does_not_fit_trains_the_next_draw_and_replays_after_a_stop(
        tiny_overrides, tmp_path, monkeypatch, capsys):
    """Base model 0.6, first draw 0.5, second 0.7: each round trains under its own seed, then
    under its first retry seed, and hands out the second draw, not the unretried round's
    adapter. A run stopped after a round goes on as the uninterrupted one; status and the
    report say what was trained again."""
    scores_per_round(monkeypatch, [0.6, 0.5, 0.7])
    overrides = [*tiny_overrides, "train.lr=1e-2", "train.retries=2"]
    plain = tmp_path / "plain"
    run(plain, [*tiny_overrides, "train.lr=1e-2"])
    out = tmp_path / "retried"
    retried = run(out, overrides)
    assert ("fitted its 8 labels at 50.0 %, below the base model's 60.0 % (balanced accuracy); "
            "trained 2 draws (50.0 %, 70.0 %), kept draw 2") in capsys.readouterr().err
    for entry in retried["rounds"]:
        k = entry["round"]
        assert entry["fit"] == {"metric": "balanced_accuracy", "base": 0.6, "draws": [0.5, 0.7],
                                "seeds": [0, derived_seed(0, k, "train_retry", part=1)],
                                "kept": 1, "chance": 0.5}
        assert any(value.any() for name, value in adapter(out, k).items() if "lora_B" in name)
    # Round 0 has the plain run's labels and start: only the draw differs.
    assert not same_adapter(adapter(out, 0), adapter(plain, 0))

    stop_after_round_0(out)
    again = run(out, overrides)
    assert timeless(again["rounds"]) == timeless(retried["rounds"])
    shown = status(out).splitlines()
    assert "trained again: 2 draws fitted its labels at 50.0, 70.0 %" in shown[2]
    assert "draw 2 kept" in shown[2]
    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report)]) == 0
    rows = (report / "retries.csv").read_text().splitlines()
    assert rows[1].split(",")[2:6] == ["3", "3", "6", "0"]


def test_a_draw_at_chance_over_a_base_model_under_it_trains_again(tiny_overrides, tmp_path,
                                                                  monkeypatch, capsys):
    """Base model 0.3 on the labels (under chance, 0.5 for two classes), first draw 0.5: at
    chance, so the round trains again and says why; the second draw, 0.7, is kept."""
    scores_per_round(monkeypatch, [0.3, 0.5, 0.7])
    results = run(tmp_path / "r", [*tiny_overrides, "train.retries=2"], strategy="random")
    assert ("fitted its 8 labels at 50.0 %, no better than chance, 50.0 % (balanced accuracy); "
            "trained 2 draws (50.0 %, 70.0 %), kept draw 2") in capsys.readouterr().err
    assert all(entry["fit"]["kept"] == 1 for entry in results["rounds"])


def test_a_round_where_no_draw_fits_hands_out_the_base_model(tiny_overrides, tmp_path,
                                                             monkeypatch, capsys):
    """Base model 0.6 and three draws under it: the round hands out the base model (B = 0,
    the zero-shot accuracy), as a guard that chose it would, and a stop after such a round
    resumes as the uninterrupted run (`train.init: continue` goes on from B = 0 too)."""
    scores_per_round(monkeypatch, [0.6, 0.5, 0.55, 0.4])
    overrides = [*tiny_overrides, "train.lr=1e-2", "train.retries=2", "train.init=continue"]
    out = tmp_path / "r"
    results = run(out, overrides)
    assert "none fitted, the base model is handed out" in capsys.readouterr().err
    for entry in results["rounds"]:
        assert entry["fit"]["draws"] == [0.5, 0.55, 0.4] and entry["fit"]["kept"] == 1
        assert handed_out(entry["guard"], entry["fit"]) == BASE
        assert entry["accuracy"] == results["baselines"]["zero_shot"]
        assert not any(value.any() for name, value in adapter(out, entry["round"]).items()
                       if "lora_B" in name)
    stop_after_round_0(out)
    assert timeless(run(out, overrides)["rounds"]) == timeless(results["rounds"])
    assert "none of 3 draws fitted" in status(out).splitlines()[2]


@pytest.mark.parametrize(("guard", "fit", "handed"), [
    (None, None, None),
    ({"chosen": TUNED}, None, TUNED),
    ({"chosen": BASE}, None, BASE),
    (None, {"draws": [0.5, 0.7], "kept": 1, "base": 0.6}, TUNED),
    (None, {"draws": [0.5, 0.6], "kept": 1, "base": 0.6}, TUNED),  # a tie fits
    (None, {"draws": [0.5, 0.55], "kept": 1, "base": 0.6}, BASE),
    ({"chosen": BASE}, {"draws": [0.7], "kept": 0, "base": 0.6}, BASE),
    ({"chosen": TUNED}, {"draws": [0.5], "kept": 0, "base": 0.6}, BASE),
    (None, {"draws": [1.0], "kept": 0, "base": 0.6, "chance": 1.0}, BASE),  # one class
    (None, {"draws": [0.5], "kept": 0, "base": 0.44, "chance": 0.5}, BASE),  # at chance
    (None, {"draws": [0.5], "kept": 0, "base": 0.44}, TUNED),  # a record from before the bar
    (None, {"draws": [0.5], "kept": 0, "base": 0.44, "chance": None}, TUNED),
])
def test_a_round_hands_out_the_base_model_where_either_check_says_so(guard, fit, handed):
    assert handed_out(guard, fit) == handed


def test_the_report_counts_rounds_trained_again_by_hand():
    """Two seeds of one strategy: of 4 rounds checked, 2 trained again (at 16 and 32 labels),
    2 + 3 + 1 + 1 = 7 draws, and one round (3 draws, the best 0.60 under the base 0.65) where
    no draw fitted."""
    def entry(n: int, draws: list[float], kept: int, base: float = 0.65, chance: float = 0.5
              ) -> dict:
        return {"n_labeled": n, "fit": {"metric": "balanced_accuracy", "base": base,
                                        "seeds": list(range(len(draws))), "draws": draws,
                                        "kept": kept, "chance": chance}}

    runs = [{"setup": "s", "strategy": "me", "rounds": [entry(16, [0.5, 0.7], 1),
                                                        entry(32, [0.7], 0)]},
            {"setup": "s", "strategy": "me", "rounds": [entry(16, [0.9], 0),
                                                        entry(32, [0.6, 0.5, 0.55], 0)]},
            {"setup": "s", "strategy": "me", "rounds": [entry(16, [1.0], 0, chance=1.0)]},
            {"setup": "s", "strategy": "random", "rounds": [{"n_labeled": 16, "fit": None}]}]
    assert fit_rows(runs) == [{"setup": "s", "strategy": "me", "checked": 5, "retried": 2,
                               "draws": 8, "unfitted": 2, "one_class": 1, "labels": [16, 32]}]


def one_class_data(tmp_path: Path, tiny_overrides: list[str]) -> list[str]:
    """Overrides for a pool whose labels are all 'yes' (the test set holds both)."""
    from tests.conftest import toy_records, write_jsonl

    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", [{**r, "answer": "yes"} for r in toy_records(80, 0)])
    write_jsonl(data / "test.jsonl", toy_records(20, 1))
    return [*tiny_overrides, f"task.data_dir={data}", "train.lr=1e-2", "train.retries=2"]


def b_is_zero(out: Path, k: int) -> bool:
    """Whether round k handed out the base model (every lora_B weight 0)."""
    return not any(value.any() for name, value in adapter(out, k).items() if "lora_B" in name)


def test_labels_of_one_class_train_one_draw_and_hand_out_the_base_model(
        tiny_overrides, tmp_path, monkeypatch, capsys):
    """Labels all 'yes': each round trains its one draw, however it scores against the base
    model (forced below it here, so the rule would otherwise retry), records the labels' one
    class (chance 1) and hands out the base model; status and the report say so. Under
    `train.beat_chance: false`, or without retries, the same labels hand out the adapter."""
    overrides = one_class_data(tmp_path, tiny_overrides)
    scores_per_round(monkeypatch, [0.9, 0.5])
    out = tmp_path / "r"
    results = run(out, overrides, strategy="random")
    assert ("its 8 labels are all 'yes', so no adapter trained on them can tell the task's "
            "classes apart (train.beat_chance)") in capsys.readouterr().err
    for entry in results["rounds"]:
        assert entry["fit"] == {"metric": "balanced_accuracy", "base": 0.9, "draws": [0.5],
                                "seeds": [0], "kept": 0, "chance": 1.0}
        assert handed_out(entry["guard"], entry["fit"]) == BASE
        assert entry["accuracy"] == results["baselines"]["zero_shot"]
        assert b_is_zero(out, entry["round"])
    assert "labels of one class, no draw can beat chance" in status(out).splitlines()[2]
    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report)]) == 0
    assert (report / "retries.csv").read_text().splitlines()[1].split(",")[2:7] == \
        ["3", "0", "3", "3", "3"]
    scores_per_round(monkeypatch, [0.9, 0.95])  # the draw fits: only the class count decides
    allowed = run(tmp_path / "allowed", [*overrides, "train.beat_chance=false"],
                  strategy="random")
    assert all(entry["fit"]["chance"] is None and handed_out(None, entry["fit"]) == TUNED
               for entry in allowed["rounds"])
    assert not b_is_zero(tmp_path / "allowed", 0)
    unchecked = run(tmp_path / "plain", [*overrides, "train.retries=0"], strategy="random")
    assert all(entry["fit"] is None for entry in unchecked["rounds"])
    assert not b_is_zero(tmp_path / "plain", 0)


def test_a_generative_task_has_no_chance_to_beat(tiny_overrides, tmp_path):
    """Answers are free text: the check scores plain accuracy against the base model's, with
    no chance level, whatever `train.beat_chance` says."""
    from tests.conftest import write_jsonl

    data = tmp_path / "sums"
    data.mkdir()
    pairs = [(a, b) for a in range(10) for b in range(10)]
    write_jsonl(data / "train.jsonl", [{"question": f"{a} cat {b}", "answer": str(a + b)}
                                       for a, b in pairs[:80]])
    write_jsonl(data / "test.jsonl", [{"question": f"{a} cat {b}", "answer": str(a + b)}
                                      for a, b in pairs[80:]])
    results = run(tmp_path / "r", [*tiny_overrides, f"task.data_dir={data}",
                                   "task.answer_type=number", "task.labels=null",
                                   "task.max_new_tokens=6", "train.retries=1"], strategy="random")
    for entry in results["rounds"]:
        assert entry["fit"]["metric"] == "accuracy" and entry["fit"]["chance"] is None


def test_a_run_begun_before_beat_chance_goes_on_as_it_began(tiny_overrides, tmp_path,
                                                            monkeypatch, capsys):
    """A run saved with retries before `train.beat_chance` (no key in its config.yaml) resumes
    handing out its one-class adapters, as it did."""
    overrides = one_class_data(tmp_path, tiny_overrides)
    scores_per_round(monkeypatch, [0.9, 0.95])
    out = tmp_path / "old"
    run(out, [*overrides, "train.beat_chance=false"], strategy="random")
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["train"]["beat_chance"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    stop_after_round_0(out)
    capsys.readouterr()
    resumed = run(out, overrides, strategy="random")
    assert "goes on as it began: train.beat_chance: False" in capsys.readouterr().err
    assert [handed_out(None, entry["fit"]) for entry in resumed["rounds"]] == [TUNED] * 3


def test_a_run_begun_before_retries_goes_on_as_it_began(tiny_overrides, tmp_path, monkeypatch,
                                                        capsys):
    """A run saved before `train.retries` (no key in its config.yaml) resumed at today's default
    trains one draw a round, as it did."""
    monkeypatch.setattr(refit, "fits", lambda tuned, base, chance=None: False)
    defaults = [item for item in tiny_overrides if not item.startswith("train.retries")]
    out = tmp_path / "old"
    run(out, [*defaults, "train.retries=0"])
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["train"]["retries"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    results = json.loads((out / "results.json").read_text())
    results["rounds"] = results["rounds"][:1]
    (out / "results.json").write_text(json.dumps(results))
    for later in (1, 2):
        shutil.rmtree(out / "rounds" / str(later))
    capsys.readouterr()
    resumed = run(out, defaults)
    assert "began before train.retries; it goes on as it began" in capsys.readouterr().err
    assert all(entry["fit"] is None for entry in resumed["rounds"])


@pytest.mark.parametrize("bad", ["train.retries=-1", "train.beat_chance=maybe"])
def test_bad_retries_exit_2_with_one_line(tiny_overrides, tmp_path, capsys, bad):
    sets = [part for item in [*tiny_overrides, bad] for part in ("--set", item)]
    assert main(["run", "--out", str(tmp_path / "r"), *sets]) == 2
    err = capsys.readouterr().err.strip()
    assert bad.split("=")[0] in err and len(err.splitlines()) == 1
