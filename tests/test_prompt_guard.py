"""The prompt guard: folds, the choice, and the loop handing out the base model or the adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

import star.active.prompt_guard as prompt_guard
from star.active.loop import Experiment
from star.active.prompt_guard import (
    BASE,
    TUNED,
    GuardCheck,
    choose,
    class_counts,
    fold_indices,
    held_out_score,
    reach_count,
    scored_classes,
)
from star.config import load_config
from star.errors import DataError
from star.model.lora import ADAPTER_WEIGHTS
from star.tools.cli import main
from star.tools.labels import status
from tests.conftest import toy_records, write_jsonl


def test_folds_cover_every_label_once_in_near_equal_sizes():
    folds = fold_indices(10, 4, np.random.default_rng(0))
    assert sorted(len(f) for f in folds) == [2, 2, 3, 3]
    assert sorted(np.concatenate(folds).tolist()) == list(range(10))
    assert all((np.diff(f) > 0).all() for f in folds)  # sorted, so disjoint within a fold
    again = fold_indices(10, 4, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))
    other = fold_indices(10, 4, np.random.default_rng(1))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, other, strict=True))
    for count, k in ((3, 4), (5, 1)):
        with pytest.raises(ValueError, match="folds"):
            fold_indices(count, k, np.random.default_rng(0))


def test_the_adapter_is_kept_when_it_holds_out_at_least_as_well():
    assert choose(0.6, 0.5) == TUNED
    assert choose(0.5, 0.6) == BASE
    assert choose(0.5, 0.5) == TUNED  # a tie keeps the adapter
    assert choose(None, 0.0) == BASE  # not checked: a class had too few labels


def test_the_rarest_class_counts_the_classes_with_no_label_as_zero():
    assert class_counts(["a", "b", "a", "b", "b"], ["a", "b"]) == {"a": 2, "b": 3}
    assert list(class_counts(["a", "b", "a", "b", "b"], ["b", "a"])) == ["b", "a"]
    assert class_counts(["a", "a", "a"], ["a", "b"]) == {"a": 3, "b": 0}
    assert min(class_counts(["c", "c", "a", "b", "b", "a", "c"], ["a", "b", "c"]).values()) == 2


def test_the_reach_counts_a_round_as_its_rarest_class_has_labels():
    """SST-2 with 3 negatives in 128 labels counts 2 × 3 = 6; three classes of 3, 5 and 10
    count 3 × 3 = 9 (not their 18, nor 3 × 10); balanced labels count themselves."""
    assert reach_count({"0": 3, "1": 125}, 128, "rarest_class") == 6
    assert reach_count({"a": 3, "b": 5, "c": 10}, 18, "rarest_class") == 9
    assert reach_count({"a": 8, "b": 8}, 16, "rarest_class") == 16
    assert reach_count({"a": 0, "b": 16}, 16, "rarest_class") == 0
    assert reach_count({"0": 3, "1": 125}, 128, "labels") == 128
    assert reach_count(None, 40, "rarest_class") == 40  # a generative task counts its labels


def test_a_short_class_leaves_the_others_to_score_where_two_have_enough():
    counts = {"a": 5, "b": 4, "c": 1}
    assert scored_classes(counts, 4, "score_the_rest") == ["a", "b"]
    assert scored_classes(counts, 4, "base") is None
    assert scored_classes({"a": 5, "b": 1, "c": 0}, 4, "score_the_rest") is None  # one is no pair
    assert scored_classes({"0": 3, "1": 125}, 4, "score_the_rest") is None  # binary: base
    assert scored_classes(counts, 1, "base") == ["a", "b", "c"]
    assert scored_classes({"a": 0, "b": 7}, 0, "base") == ["a", "b"]  # no minimum


def test_a_check_scores_neither_model_on_a_class_left_out():
    """a: tuned 1/2, base 2/2; b: tuned 2/2, base 0/2; c (left out): tuned 0/1, base 1/1.
    Without c: tuned (1/2 + 1)/2 = 3/4 against base (1 + 0)/2 = 1/2, the adapter kept; with
    it: tuned (1/2 + 1 + 0)/3 = 1/2 against base (1 + 0 + 1)/3 = 2/3, the base model."""
    tuned, base, classes = [True, False, True, True, False], [True, True, False, False, True], \
        ["a", "a", "b", "b", "c"]
    check = GuardCheck.of(tuned, base, classes, folds=2, fewest=1, seconds=0.0, left_out=["c"])
    assert (check.labels, check.tuned_cv, check.base, check.chosen, check.left_out) == \
        (5, 0.75, 0.5, TUNED, ["c"])
    whole = GuardCheck.of(tuned, base, classes, folds=2, fewest=1, seconds=0.0)
    assert (whole.tuned_cv, whole.base, whole.chosen, whole.left_out) == (0.5, 2 / 3, BASE, [])
    with pytest.raises(ValueError, match="every class"):
        GuardCheck.of([True], [True], ["c"], folds=2, fewest=1, seconds=0.0, left_out=["c"])


def test_balanced_accuracy_weighs_each_class_of_the_labels_alike():
    """13 labels `no`, 3 `yes`: answering `no` to all is 13/16 right but balanced 1/2."""
    classes = ["no"] * 13 + ["yes"] * 3
    majority = [True] * 13 + [False] * 3
    assert held_out_score(majority, None) == 13 / 16
    assert held_out_score(majority, classes) == 0.5
    mixed = [True] * 10 + [False] * 3 + [True] * 2 + [False]  # 10/13 and 2/3
    assert held_out_score(mixed, classes) == pytest.approx((10 / 13 + 2 / 3) / 2)


def test_equal_scores_are_equal_floats_so_a_tie_keeps_the_adapter():
    """4 labels `a` and 12 `b`: 4/4 and 4/12 right, and 2/4 and 10/12 right, are both a
    balanced 2/3; averaged in floats they came out an ulp apart (…666 against …667), and a
    round retried, or a guard handed out the base model, on a tie (twelfth session)."""
    classes = ["a"] * 4 + ["b"] * 12
    tuned = [True] * 4 + [True] * 4 + [False] * 8
    base = [True] * 2 + [False] * 2 + [True] * 10 + [False] * 2
    assert held_out_score(tuned, classes) == held_out_score(base, classes) == 2 / 3
    assert choose(held_out_score(tuned, classes), held_out_score(base, classes)) == TUNED
    assert held_out_score([True, False, True], None) == 2 / 3


def test_a_check_records_both_scores_by_hand():
    check = GuardCheck.of([True, False, False, False], [True, True, True, False], ["a", "a", "b", "b"],
                          folds=2, fewest=2, seconds=1.23456)
    assert check.to_dict() == {"folds": 2, "labels": 4, "metric": "balanced_accuracy",
                               "fewest": 2, "tuned_cv": 0.25, "base": 0.75, "chosen": BASE,
                               "seconds": 1.235, "left_out": []}
    lopsided = GuardCheck.of([True] * 13 + [False] * 3, [True] * 12 + [False, True, True, False],
                             ["no"] * 13 + ["yes"] * 3, folds=4, fewest=3, seconds=0.0)
    assert (lopsided.tuned_cv, lopsided.chosen) == (0.5, BASE)  # 13/16 plain: it would be kept
    plain = GuardCheck.of([True, False], [False, False], None, folds=2, fewest=None, seconds=0.0)
    assert (plain.metric, plain.tuned_cv, plain.chosen) == ("accuracy", 0.5, TUNED)
    unchecked = GuardCheck.of(None, [True, True, False], ["a", "a", "b"], folds=4, fewest=1,
                              seconds=0.0)
    assert (unchecked.folds, unchecked.tuned_cv, unchecked.base, unchecked.chosen) == \
        (0, None, 0.5, BASE)
    with pytest.raises(ValueError, match="same"):
        GuardCheck.of([True], [True, False], None, folds=2, fewest=None, seconds=0.0)
    with pytest.raises(ValueError, match="same"):
        GuardCheck.of([], [], None, folds=2, fewest=None, seconds=0.0)
    with pytest.raises(ValueError, match="same"):
        GuardCheck.of(None, [], None, folds=2, fewest=None, seconds=0.0)


def run(out: Path, overrides: list[str], strategy: str = "me") -> dict:
    sets = [part for item in overrides for part in ("--set", item)]
    assert main(["run", "--strategy", strategy, "--seed", "0", "--out", str(out), *sets]) == 0
    return json.loads((out / "results.json").read_text())


def lora_b(out: Path, k: int) -> list[np.ndarray]:
    weights = load_file(out / "rounds" / str(k) / "adapter" / ADAPTER_WEIGHTS)
    return [v.numpy() for name, v in weights.items() if "lora_B" in name]


def test_a_round_that_chooses_the_base_model_hands_it_out(tiny_overrides, tmp_path, monkeypatch):
    """Evaluated, saved (for export and the next batch's suggestions) and recorded: the base
    model, i.e. the initial adapter with B = 0, whose test accuracy is the zero-shot one."""
    monkeypatch.setattr(prompt_guard, "choose", lambda tuned, base: BASE)
    results = run(tmp_path / "r", [*tiny_overrides, "guard.folds=2", "guard.max_labels=16",
                                   "guard.reach=labels", "guard.min_per_class=0"])
    rounds = results["rounds"]
    assert [r["n_labeled"] for r in rounds] == [8, 16, 24]
    for r in rounds[:2]:
        assert r["guard"]["chosen"] == BASE and r["guard"]["folds"] == 2
        assert r["guard"]["labels"] == r["n_labeled"]
        assert r["accuracy"] == results["baselines"]["zero_shot"]
        assert all(not b.any() for b in lora_b(tmp_path / "r", r["round"]))
    assert rounds[2]["guard"] is None  # 24 labels > guard.max_labels
    assert any(b.any() for b in lora_b(tmp_path / "r", 2))
    report = tmp_path / "report"
    assert main(["report", str(tmp_path / "r"), "--out", str(report)]) == 0
    labels_csv = (report / "labels.csv").read_text().splitlines()
    assert labels_csv[0].endswith(",Answers equal to the suggestion")
    agreement = rounds[0]["suggestion_agreement"]
    assert labels_csv[1].endswith(f",{agreement['rate']}") and agreement["answered"] == 8
    guard_csv = (report / "prompt_guard.csv").read_text().splitlines()
    assert len(guard_csv) == 3 and ",8,1,1," in guard_csv[1] and ",16,1,1," in guard_csv[2]
    shown = status(tmp_path / "r").splitlines()
    assert "guard: the base model (tuned recipe" in shown[2] and "guard" not in shown[4]
    assert "answers equal the model's suggestion" in shown[2]


def stop_after(out: Path, rounds: int) -> None:
    """`out` as a run stopped after its first `rounds` rounds, before the next batch."""
    results = json.loads((out / "results.json").read_text())
    results["rounds"] = results["rounds"][:rounds]
    (out / "results.json").write_text(json.dumps(results))
    for later in range(rounds, 9):
        shutil.rmtree(out / "rounds" / str(later), ignore_errors=True)


def round_file(out: Path, k: int, name: str) -> str:
    return (out / "rounds" / str(k) / name).read_text()


def test_under_select_with_trained_the_trained_adapter_picks_the_next_batch(tiny_overrides,
                                                                           tmp_path, monkeypatch):
    """The guard hands out the base model (evaluated, saved as the round's adapter, making the
    suggestions), but the adapter the round trained, kept beside it, picks the next batch: the
    selections and scores are the unguarded run's, and a run resumed after such a round picks
    and suggests as the uninterrupted one."""
    overrides = [*tiny_overrides, "train.lr=1e-2", "loop.budget=32"]  # an adapter that moves
    plain = run(tmp_path / "plain", overrides)
    monkeypatch.setattr(prompt_guard, "choose", lambda tuned, base: BASE)
    overrides += ["guard.folds=2", "guard.max_labels=16", "guard.reach=labels",
                  "guard.min_per_class=0"]
    out = tmp_path / "guarded"
    guarded = run(out, overrides)
    assert [r["guard"] and r["guard"]["chosen"] for r in guarded["rounds"]] == [BASE, BASE,
                                                                                 None, None]
    assert [r["selected_ids"] for r in guarded["rounds"]] == \
        [r["selected_ids"] for r in plain["rounds"]]
    for k in (1, 2, 3):  # scored by the very adapter the unguarded run scored with
        assert round_file(out, k, "scores.jsonl") == round_file(tmp_path / "plain", k,
                                                                "scores.jsonl")
    # Suggestions come from the model handed out: the base model after rounds 0 and 1.
    assert round_file(out, 2, "batch.json") != round_file(tmp_path / "plain", 2, "batch.json")
    assert round_file(out, 3, "batch.json") == round_file(tmp_path / "plain", 3, "batch.json")
    for k in (0, 1):
        assert guarded["rounds"][k]["accuracy"] == guarded["baselines"]["zero_shot"]
        assert all(not b.any() for b in lora_b(out, k))
        trained = load_file(out / "rounds" / str(k) / "trained_adapter" / ADAPTER_WEIGHTS)
        handed_by_plain = load_file(tmp_path / "plain" / "rounds" / str(k) / "adapter"
                                    / ADAPTER_WEIGHTS)
        assert trained.keys() == handed_by_plain.keys()
        assert all(torch.equal(trained[n], handed_by_plain[n]) for n in trained)
    assert not (out / "rounds" / "2" / "trained_adapter").exists()

    picked = {k: (round_file(out, k, "scores.jsonl"), round_file(out, k, "batch.json"))
              for k in (2, 3)}
    stop_after(out, 2)  # round 1's guard chose the base model
    again = run(out, overrides)
    assert [r["selected_ids"] for r in again["rounds"]] == \
        [r["selected_ids"] for r in guarded["rounds"]]
    assert picked == {k: (round_file(out, k, "scores.jsonl"), round_file(out, k, "batch.json"))
                      for k in (2, 3)}
    shutil.rmtree(out / "rounds" / "1" / "trained_adapter")
    stop_after(out, 2)
    with pytest.raises(DataError, match="handed out the base model and kept the adapter"):
        Experiment(load_config(None, ["strategy=me", "seed=0", *overrides]), out).run()


def test_a_run_begun_before_select_with_goes_on_as_it_began(tiny_overrides, tmp_path,
                                                           monkeypatch, capsys):
    """A run saved before `guard.select_with` (no key in its config.yaml, no trained adapter
    kept) and resumed at today's default goes on selecting with the model handed out."""
    monkeypatch.setattr(prompt_guard, "choose", lambda tuned, base: BASE)
    overrides = [*tiny_overrides, "train.lr=1e-2", "guard.folds=2", "guard.max_labels=16",
                 "guard.min_per_class=0"]
    out = tmp_path / "old"
    run(out, [*overrides, "guard.select_with=handed"])
    scores = round_file(out, 2, "scores.jsonl")
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["guard"]["select_with"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    stop_after(out, 2)
    capsys.readouterr()
    run(out, overrides)
    assert "began before guard.select_with; it goes on as it began" in capsys.readouterr().err
    assert round_file(out, 2, "scores.jsonl") == scores


@pytest.mark.parametrize("select_with", ["trained", "handed"])
def test_the_model_that_scores_after_a_base_round(tiny_overrides, tmp_path, monkeypatch,
                                                  select_with):
    """me-star after a round that handed out the base model picks round 1's batch with the
    adapter round 0 trained (B ≠ 0) under `trained`, with the base model (B = 0) under
    `handed`; there its MC-dropout passes add zeros whatever the mask, so they agree with each
    other and with μ_b up to float rounding (which kernels may order differently)."""
    monkeypatch.setattr(prompt_guard, "choose", lambda tuned, base: BASE)
    largest_b: dict[int, float] = {}  # round -> the largest |B| of the model that picked
    choose = Experiment.choose

    def spy(self, strategy, k, *args, **kwargs):
        largest_b[k] = max(float(p.detach().abs().max())
                           for n, p in self.loaded.model.named_parameters() if "lora_B" in n)
        return choose(self, strategy, k, *args, **kwargs)

    monkeypatch.setattr(Experiment, "choose", spy)
    out = tmp_path / select_with
    run(out, [*tiny_overrides, "guard.folds=2", "guard.max_labels=8", "guard.min_per_class=0",
              "loop.budget=16", f"guard.select_with={select_with}"], strategy="me-star")
    assert (largest_b[1] > 0) == (select_with == "trained")
    if select_with == "handed":
        rows = [json.loads(line) for line in (out / "rounds" / "1" / "scores.jsonl").open()]
        assert all(row["passes"] == pytest.approx([row["base"]] * 3, rel=1e-4) for row in rows)
    assert (out / "rounds" / "0" / "trained_adapter").exists() == (select_with == "trained")
    blind = tmp_path / f"random-{select_with}"  # picks without the model: nothing to keep
    run(blind, [*tiny_overrides, "guard.folds=2", "guard.max_labels=8", "guard.min_per_class=0",
                "loop.budget=16", f"guard.select_with={select_with}"], strategy="random")
    assert not (blind / "rounds" / "0" / "trained_adapter").exists()


@pytest.mark.parametrize("init", ["fresh", "continue"])
def test_a_round_that_keeps_its_adapter_is_the_unguarded_round(tiny_overrides, tmp_path,
                                                               monkeypatch, init):
    """The check trains k other adapters from their own draws and then puts the round's back
    (under `continue`, the one the round goes on from): the adapter handed out, its accuracy
    and the next selections equal a run without guard."""
    overrides = [*tiny_overrides, f"train.init={init}"]
    plain = run(tmp_path / "plain", overrides)
    monkeypatch.setattr(prompt_guard, "choose", lambda tuned, base: TUNED)
    guarded = run(tmp_path / "guarded", [*overrides, "guard.folds=4", "guard.min_per_class=0"])
    assert all(r["guard"]["chosen"] == TUNED for r in guarded["rounds"])
    for a, b in zip(plain["rounds"], guarded["rounds"], strict=True):
        assert (a["accuracy"], a["selected_ids"]) == (b["accuracy"], b["selected_ids"])
        assert all(np.array_equal(x, y) for x, y in zip(lora_b(tmp_path / "plain", a["round"]),
                                                        lora_b(tmp_path / "guarded", b["round"]),
                                                        strict=True))


def test_the_base_model_is_measured_on_the_labels_so_far(tiny_overrides, tmp_path):
    """base: the base model's balanced accuracy on the round's labels, from the same answers as
    its suggestions in the round-0 batch (made before any training)."""
    results = run(tmp_path / "r", [*tiny_overrides, "guard.folds=2", "loop.budget=8",
                                   "guard.min_per_class=0"])
    check = results["rounds"][0]["guard"]
    batch = json.loads((tmp_path / "r" / "rounds" / "0" / "batch.json").read_text())
    answers = {json.loads(line)["id"]: json.loads(line)["value"]
               for line in (tmp_path / "r" / "labels.jsonl").read_text().splitlines()}
    agree = [item["suggestion"] == answers[item["id"]] for item in batch["items"]]
    golds = [answers[item["id"]] for item in batch["items"]]
    assert check["labels"] == 8 and check["metric"] == "balanced_accuracy"
    assert check["base"] == pytest.approx(held_out_score(agree, golds))
    assert check["chosen"] == (TUNED if check["tuned_cv"] >= check["base"] else BASE)
    assert results["rounds"][0]["suggestion_agreement"]["rate"] == pytest.approx(np.mean(agree))


def test_a_class_with_too_few_labels_hands_out_the_base_model_untrained(tiny_overrides,
                                                                         tmp_path, monkeypatch):
    """Until every class has `guard.min_per_class` labels no fold trains (`cross_validated` is
    not called) and the base model is handed out; from then on the folds decide."""
    trained: list[int] = []
    original = prompt_guard.choose
    monkeypatch.setattr(prompt_guard, "choose",
                        lambda tuned, base: trained.append(tuned is not None) or original(tuned, base))
    results = run(tmp_path / "r", [*tiny_overrides, "guard.folds=2", "guard.max_labels=24"])
    answers = [json.loads(line)["value"]
               for line in (tmp_path / "r" / "labels.jsonl").read_text().splitlines()]
    fewest = [min(answers[:n].count(label) for label in ("yes", "no")) for n in (8, 16, 24)]
    checks = [r["guard"] for r in results["rounds"]]
    assert [c["fewest"] for c in checks] == fewest
    assert trained == [f >= 4 for f in fewest]
    for check, f in zip(checks, fewest, strict=True):
        if f < 4:
            assert (check["folds"], check["tuned_cv"], check["chosen"]) == (0, None, BASE)
        else:
            assert check["folds"] == 2 and check["tuned_cv"] is not None
    never = run(tmp_path / "never", [*tiny_overrides, "guard.folds=2", "guard.max_labels=24",
                                     "guard.min_per_class=9"])  # 8 labels: no class can have 9
    assert never["rounds"][0]["guard"]["tuned_cv"] is None
    assert never["rounds"][0]["accuracy"] == never["baselines"]["zero_shot"]
    assert "too few to check the tuned recipe" in status(tmp_path / "never").splitlines()[2]


@pytest.fixture
def rare_class_overrides(tiny_overrides, tmp_path) -> list[str]:
    """The toy task with a third class, `true`, one in 16 of the training file (a pool of 60
    holds about 4): a class that stays rare, beside two that are not."""
    train, test = toy_records(80, 0), toy_records(20, 1)
    for records in (train, test):
        for record in records[::16]:
            record["answer"] = "true"
    folder = tmp_path / "rare-data"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "test.jsonl", test)
    return [*tiny_overrides, f"task.data_dir={folder}", "task.labels=[yes, no, true]",
            "guard.folds=2"]


def rounds_counts(results: dict) -> list[list[int]]:
    """Each round's labels of yes, no and true."""
    return [[r["label_counts"].get(c, 0) for c in ("yes", "no", "true")]
            for r in results["rounds"]]


def test_the_guard_checks_on_while_a_class_stays_rare(rare_class_overrides, tmp_path):
    """`guard.max_labels: 8` under `reach: labels` checks round 0 alone (8, 16, 24 labels);
    under `rarest_class` every round whose rarest class has at most 8 / 3 labels, past 8."""
    sets = [*rare_class_overrides, "guard.max_labels=8", "guard.min_per_class=0"]
    by_labels = run(tmp_path / "labels", [*sets, "guard.reach=labels"])
    assert [bool(r.get("guard")) for r in by_labels["rounds"]] == [True, False, False]
    rarest = run(tmp_path / "rarest", [*sets, "guard.reach=rarest_class"])
    expected = [3 * min(counts) <= 8 for counts in rounds_counts(rarest)]
    assert [bool(r.get("guard")) for r in rarest["rounds"]] == expected
    assert expected[0] and any(expected[1:])  # checked past 8 labels, where `labels` stopped


def test_a_class_short_of_labels_is_left_out_where_two_have_enough(rare_class_overrides,
                                                                   tmp_path):
    """`short_class: score_the_rest` checks a round where a class has under 2 labels on the
    classes that have 2, where two do; `base` hands out the base model there unchecked."""
    sets = [*rare_class_overrides, "guard.min_per_class=2"]
    rest = run(tmp_path / "rest", [*sets, "guard.short_class=score_the_rest"])
    unchecked = run(tmp_path / "base", [*sets, "guard.short_class=base"])
    left_out = 0
    for counts, check, plain in zip(rounds_counts(rest), [r["guard"] for r in rest["rounds"]],
                                    [r["guard"] for r in unchecked["rounds"]], strict=True):
        short = [c for c, n in zip(("yes", "no", "true"), counts, strict=True) if n < 2]
        if not short:
            assert check["left_out"] == [] and check["tuned_cv"] is not None
        elif len(short) == 1:
            left_out += 1
            assert (check["left_out"], check["folds"]) == (short, 2)
            assert check["tuned_cv"] is not None
            assert (plain["tuned_cv"], plain["chosen"]) == (None, BASE)
            shown = f"without {short[0]} (too few labels)"
        else:
            assert (check["tuned_cv"], check["chosen"], check["left_out"]) == (None, BASE, [])
    assert left_out  # the toy pool left one class short in some round
    assert shown in status(tmp_path / "rest")


@pytest.mark.parametrize(("override", "message"), [
    ("guard.folds=1", "guard.folds is 1"),
    ("guard.max_labels=0", "guard.max_labels"),
    ("guard.min_per_class=-1", "guard.min_per_class"),
    ("guard.select_with=base", "guard.select_with"),
    ("guard.reach=all", "guard.reach"),
    ("guard.short_class=skip", "guard.short_class"),
])
def test_a_bad_guard_key_exits_2_with_one_line(tiny_overrides, tmp_path, capsys, override,
                                               message):
    sets = [part for item in [*tiny_overrides, override] for part in ("--set", item)]
    assert main(["run", "--out", str(tmp_path / "r"), *sets]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r" / "config.yaml").exists()


def test_fewer_labels_than_folds_leave_one_out(tiny_overrides, tmp_path):
    results = run(tmp_path / "r", [*tiny_overrides, "guard.folds=4", "guard.min_per_class=0",
                                   "loop.warm_start=3",
                                   "loop.step=3", "loop.budget=6"])
    assert [r["guard"]["folds"] for r in results["rounds"]] == [3, 4]
    assert [r["guard"]["labels"] for r in results["rounds"]] == [3, 6]


def test_accuracy_against_the_prompt_by_hand(tmp_path):
    """Seeds 0, 1 and 2 at 8 and 16 labels against zero-shot 0.7, 0.6 and 0.5: differences
    −0.1, 0.0, +0.1 at 8 labels (mean 0, t-interval ±t(0.975, 2)·0.1/√3 = ±0.2484) and +0.1
    each at 16 (no spread: an interval of one point)."""
    from star.results.summary import collect_runs, prompt_rows
    from tests.test_report_setups import make_run

    for seed, (zero_shot, first) in enumerate(((0.7, 0.6), (0.6, 0.6), (0.5, 0.6))):
        config = {"strategy": "random", "seed": seed, "task": {"name": "sst2"},
                  "loop": {"budget": 16}}
        rounds = [{"round": 0, "n_labeled": 8, "accuracy": first, "selected_ids": []},
                  {"round": 1, "n_labeled": 16, "accuracy": zero_shot + 0.1, "selected_ids": []}]
        make_run(tmp_path / "random" / f"seed{seed}", config, rounds,
                 baselines={"chance": 0.5, "majority": 0.5, "zero_shot": zero_shot})
    eight, sixteen = prompt_rows(collect_runs(tmp_path))
    assert (eight["n_labeled"], eight["below"], eight["accuracy"]) == (8, 1, pytest.approx(0.6))
    assert eight["comparison"].mean == pytest.approx(0.0, abs=1e-12)
    assert eight["comparison"].high == pytest.approx(0.1 * 4.302653 / 3**0.5, rel=1e-6)
    assert (sixteen["below"], sixteen["comparison"].mean) == (0, pytest.approx(0.1))
    assert sixteen["comparison"].low == pytest.approx(0.1)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    rows = (tmp_path / "report" / "against_the_prompt.csv").read_text().splitlines()
    assert rows[1:] == ["SST-2,random,8,3,60.0,0.0,1.0,1", "SST-2,random,16,3,70.0,10.0,0.0,0"]
