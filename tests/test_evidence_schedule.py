"""The `evidence` schedule: the paper's λ(t) scaled by the base model's skill on the labels so
far, its accuracy over chance. Every number is worked out by hand; then a run on the tiny model
checks which labels the skill is read on, and that a strategy without the mix never asks."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from star.active.loop import Experiment
from star.active.mixing import base_skill, chance_agreement, schedule_weight
from star.config import load_config
from star.data.sources import load_task
from star.errors import ConfigError
from star.model.passes import Prediction
from star.tools.cli import main
from tests.test_replay import run_argv


def test_chance_is_the_agreement_of_answers_independent_of_the_examples():
    # predictions a a b b, labels a b b b: p(a) = p(b) = 1/2, q(a) = 1/4, q(b) = 3/4
    assert chance_agreement(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == 0.5
    # one answer always: chance is its share of the labels, 3/4, not 1/2 of two classes
    assert chance_agreement(["a", "a", "a", "a"], ["a", "a", "a", "b"]) == 0.75
    # a class never predicted or never labeled adds nothing
    assert chance_agreement(["c", "b"], ["a", "b"]) == 0.25
    with pytest.raises(ValueError):
        chance_agreement(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        chance_agreement([], [])


def test_skill_is_the_way_from_chance_to_always_right():
    assert base_skill(0.625, 0.25) == 0.5  # (0.625 - 0.25) / 0.75
    assert base_skill(1.0, 0.25) == 1.0
    assert base_skill(0.25, 0.25) == 0.0
    assert base_skill(0.22, 0.25) == 0.0  # below chance (the skewed topic pool's 22 %)
    assert base_skill(1.0, 1.0) == 0.0  # one answer, one label: no evidence
    assert base_skill(0.9, 0.6) == pytest.approx(0.75)  # (0.9 - 0.6) / 0.4


@pytest.mark.parametrize("t", range(12))
def test_a_base_model_always_right_keeps_the_papers_schedule(t):
    assert schedule_weight(t, "evidence", skill=1.0) == schedule_weight(t, "linear")


def test_evidence_scales_the_papers_schedule_by_the_skill():
    assert schedule_weight(0, "evidence", skill=0.5) == pytest.approx(0.45)  # 0.5 · 0.9
    assert schedule_weight(1, "evidence", rate=0.2, skill=0.5) == pytest.approx(0.3)  # 0.5 · 0.6
    assert schedule_weight(12, "evidence", skill=0.5) == 0.0  # 1 − 1.3 < 0: clipped
    with pytest.raises(ValueError, match="outside"):
        schedule_weight(0, "evidence", skill=1.5)
    with pytest.raises(ValueError, match="outside"):
        schedule_weight(0, "evidence", skill=-0.1)
    assert schedule_weight(0, "linear", skill=0.0) == pytest.approx(0.9)  # other schedules ignore it


def test_a_base_model_at_chance_is_not_heard():
    # A prompt that answers "sports" to everything, on labels a quarter of which are sports:
    # 25 % accurate, exactly chance, so λ is 0 from the first selection on.
    predicted, gold = ["sports"] * 8, ["sports", "sports", "world", "world", "business",
                                       "business", "science", "science"]
    accuracy = sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
    skill = base_skill(accuracy, chance_agreement(predicted, gold))
    assert skill == 0.0 and schedule_weight(0, "evidence", skill=skill) == 0.0
    # Perfect answers on the same labels: chance 1/4 (2/8 of each), skill 1, the paper's 0.9.
    perfect = base_skill(1.0, chance_agreement(gold, gold))
    assert perfect == 1.0 and schedule_weight(0, "evidence", skill=perfect) == pytest.approx(0.9)


def test_the_config_takes_evidence_and_refuses_it_where_typicality_stands_for_the_base_model():
    assert load_config(None, []).uncertainty.schedule == "linear"
    assert load_config(None, ["uncertainty.schedule=evidence"]).uncertainty.schedule == "evidence"
    with pytest.raises(ConfigError, match=r"uncertainty.schedule: evidence .*'typiclust-me-star'"):
        load_config(None, ["strategy=typiclust-me-star", "uncertainty.schedule=evidence"])


def test_a_run_reads_the_skill_on_the_labels_before_each_round(tiny_overrides, tmp_path,
                                                               monkeypatch):
    """Round k's skill is the base model's κ on the labels of rounds 0 … k − 1 (not round k's
    own batch, nor only the last round's), and λ(k) the paper's 1 − 0.1·k times it. The tiny
    model is at chance (κ = 0 everywhere), so its answers are made up: right except on the
    two first ids of round 1's batch. Round 1 then reads κ = 1 (the warm start alone) and
    round 2 κ on 14 right answers of 16, worked out below from the gold labels."""
    labels = ["yes", "no"]

    def answers(self, examples):
        rounds = self.results.get("rounds") or []
        wrong = set(sorted(rounds[1]["selected_ids"])[:2]) if len(rounds) > 1 else set()
        said = [labels[1 - labels.index(e.gold)] if e.id in wrong else e.gold for e in examples]
        return [Prediction(e.id, p, e.gold, p == e.gold, 1.0)
                for e, p in zip(examples, said, strict=True)]

    monkeypatch.setattr(Experiment, "predict", answers)
    out = tmp_path / "evidence"
    assert main(run_argv(out, "me-star", [*tiny_overrides, "uncertainty.schedule=evidence"])) == 0
    results = json.loads((out / "results.json").read_text())
    task = load_task(load_config(out / "config.yaml").task)
    gold = {e.id: e.gold for e in task.train}
    rounds = results["rounds"]
    seen = [*rounds[0]["selected_ids"], *rounds[1]["selected_ids"]]
    wrong = sorted(rounds[1]["selected_ids"])[:2]
    assert 0 < sum(gold[i] == "yes" for i in rounds[0]["selected_ids"]) < 8  # κ is defined
    assert results["base_skill"]["1"] == pytest.approx(1.0, abs=1e-12)
    # accuracy 14/16; chance Σ_c p(said c)·p(gold c)
    said = Counter(labels[1 - labels.index(gold[i])] if i in wrong else gold[i] for i in seen)
    truth = Counter(gold[i] for i in seen)
    chance = sum(said[c] * truth[c] for c in labels) / 16**2
    skill = (14 / 16 - chance) / (1 - chance)
    assert 0 < skill < 1
    assert results["base_skill"]["2"] == pytest.approx(skill, abs=1e-12)
    for k in (1, 2):
        assert results["lambda"][str(k)] == pytest.approx(
            (1 - 0.1 * k) * results["base_skill"][str(k)], abs=1e-12)


@pytest.mark.parametrize(("strategy", "mix"), [("me", "weighted"), ("me-star", "subtract")])
def test_a_strategy_without_the_mix_never_asks_the_base_model(tiny_overrides, tmp_path,
                                                             monkeypatch, strategy, mix):
    """`me` has no λ(t) to weigh, nor has `subtract` (μ_f − μ_b): under `evidence` neither may
    pay the base model's answers."""
    def asked(self, k):
        raise AssertionError(f"base_skill({k}) was computed for a strategy without the mix")

    monkeypatch.setattr(Experiment, "base_skill", asked)
    out = tmp_path / strategy
    assert main(run_argv(out, strategy, [*tiny_overrides, "uncertainty.schedule=evidence",
                                         f"uncertainty.mix={mix}"])) == 0
    results = json.loads((out / "results.json").read_text())
    assert "base_skill" not in results and "lambda" not in results
