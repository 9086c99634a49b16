"""The measures beyond the paper, the strategy algebra, the batch rules as the loop calls them,
and the stopping signals: hand-computed values, no model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from star.active.measures import (
    bald,
    base_measure,
    choice_uncertainty,
    label_probs,
    label_uncertainty,
    response_uncertainty,
)
from star.active.stopping import stability, stopping_summary
from star.active.strategies import STRATEGIES, TABLE1, get_strategy, select_batch, strategy_colors
from star.config import load_config
from star.errors import ConfigError
from star.model.passes import mutual_information

H_09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # 0.325083 nats


def test_label_measures_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2]])
    assert label_uncertainty(probs, "lc") == pytest.approx([0.3, 0.6])
    assert label_uncertainty(probs, "margin") == pytest.approx([1 - 0.5, 1 - 0.0])
    entropy = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert entropy == pytest.approx(0.801819, abs=1e-6)
    assert label_uncertainty(probs, "entropy")[0] == pytest.approx(entropy)
    with pytest.raises(ValueError, match="not a label measure"):
        label_uncertainty(probs, "me")


def test_label_distribution_is_renormalised_over_the_label_set():
    # the labels hold 0.8 of the vocabulary's mass: 0.2 and 0.6 become 0.25 and 0.75
    logprob = np.log(np.array([[[0.2, 0.6]]]))
    assert label_probs(logprob)[0, 0] == pytest.approx([0.25, 0.75])
    lc = choice_uncertainty(logprob, np.zeros_like(logprob), None, "lc")
    assert lc.shape == (1, 1) and lc[0, 0] == pytest.approx(0.25)


def test_bald_by_hand():
    disagree = np.array([[[0.9, 0.1]], [[0.1, 0.9]]])  # [passes, examples, labels]
    assert bald(disagree) == pytest.approx([math.log(2) - H_09])  # 0.693147 − 0.325083
    agree = np.array([[[0.9, 0.1]], [[0.9, 0.1]]])
    assert bald(agree) == pytest.approx([0.0], abs=1e-12)
    scores = choice_uncertainty(np.log(disagree), np.zeros_like(disagree), None, "bald")
    assert scores.shape == (1, 1) and scores[0, 0] == pytest.approx(0.368064, abs=1e-6)


def test_token_mutual_information_by_hand():
    probs = torch.tensor([[[0.9, 0.1, 0.0]], [[0.1, 0.9, 0.0]]], dtype=torch.float64)
    assert mutual_information(probs).item() == pytest.approx(math.log(2) - H_09, abs=1e-6)
    same = torch.tensor([[[0.5, 0.25, 0.25]], [[0.5, 0.25, 0.25]]], dtype=torch.float64)
    assert mutual_information(same).item() == pytest.approx(0.0, abs=1e-12)
    summed = response_uncertainty(np.zeros((2, 1)), np.zeros((2, 1)), "bald", np.array([0.4]))
    assert summed.shape == (1, 1) and summed[0, 0] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="choice task"):
        response_uncertainty(np.zeros((1, 1)), np.zeros((1, 1)), "margin")


def test_the_base_model_has_no_dropout_so_bald_mixes_its_predictive_entropy():
    assert base_measure("bald", generative=False) == "entropy"
    assert base_measure("bald", generative=True) == "me"
    assert base_measure("margin", generative=False) == "margin"


def test_the_strategy_algebra():
    assert get_strategy("margin+dynamic") == STRATEGIES["margin+dynamic"]
    assert (get_strategy("bald").mc_dropout, get_strategy("bald").dynamic) == (True, False)
    star = get_strategy("bald-star")
    assert (star.dynamic, star.mc_dropout, star.l2_on_b) == (True, True, True)
    assert "bald+dynamic+mc" not in STRATEGIES and "bald+dynamic+l2" not in STRATEGIES
    kcenter = get_strategy("me+kcenter")
    assert (kcenter.measure, kcenter.rule, kcenter.dynamic, kcenter.features) == \
        ("me", "kcenter", False, True)
    assert get_strategy("me-star+badge").l2_on_b and get_strategy("me-star+badge").rule == "badge"
    assert not get_strategy("lc+power").features
    assert "random+kcenter" not in STRATEGIES  # a batch rule shortlists by a measure
    assert {"random", "me", "me-star", "margin", "bald", "bald-star", "me+kcenter"} <= set(TABLE1)
    assert "margin+dynamic" not in TABLE1
    assert STRATEGIES["me"].color == "tab:red"  # the paper's strategies keep their colours
    with pytest.raises(ConfigError, match=r"a measure \(pe, me, lc, margin, entropy, bald\)"):
        get_strategy("maximum-fun")


def test_select_batch_applies_each_rule():
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.05])
    hidden = np.array([[0.0], [0.1], [5.0], [10.0], [10.1]])
    rng = np.random.default_rng(0)
    assert select_batch(get_strategy("me"), scores, 2, rng=rng).tolist() == [0, 1]
    # k-center among the 2·2 highest scores (0, 1, 2, 3), from the highest: 0, then 3 (10 away)
    kcenter = get_strategy("me+kcenter")
    assert select_batch(kcenter, scores, 2, rng=rng, hidden=hidden, candidates=2).tolist() == [0, 3]
    # with the whole pool as candidates the farthest from 0 is 4 (10.1 away)
    assert select_batch(kcenter, scores, 2, rng=rng, hidden=hidden, candidates=0).tolist() == [0, 4]
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.99, 0.01], [0.99, 0.01]])
    # BADGE's first centre has the largest gradient embedding ‖p − onehot(ŷ)‖·‖h‖: example 2
    # (0.5·√2·5) beats 3 (0.01·√2·10) among the 4·1 candidates 0..3; among 2·1 (0, 1) it is 1
    badge = get_strategy("me+badge")
    common = {"rng": rng, "probs": probs, "hidden": hidden}
    assert select_batch(badge, scores, 1, candidates=4, **common).tolist() == [2]
    assert select_batch(badge, scores, 1, candidates=2, **common).tolist() == [1]
    a = select_batch(get_strategy("me+power"), scores, 3, rng=np.random.default_rng(5))
    b = select_batch(get_strategy("me+power"), scores, 3, rng=np.random.default_rng(5))
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 3
    with pytest.raises(ValueError, match="hidden states"):
        select_batch(kcenter, scores, 2, rng=rng)


@pytest.mark.parametrize(("overrides", "message"), [
    (["strategy=bald", "lora.dropout=0"], "lora.dropout = 0 turns off"),
    (["strategy=me-star", "lora.dropout=0"], "lora.dropout = 0 turns off"),
    (["strategy=bald", "uncertainty.mc_passes=1"], "mc_passes to 2 or more"),
    (["strategy=margin", "task.name=gsm8k"], "reads a label distribution"),
    (["strategy=me+badge", "task.name=gsm8k"], "reads a label distribution"),
    (["strategy=me+dynamic+power", "uncertainty.mix=subtract"], "use \\+softmax"),
    (["selection.candidates=-1"], "selection.candidates"),
])
def test_strategies_that_cannot_work_are_refused_at_load(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_generative_tasks_take_bald_and_kcenter():
    assert load_config(None, ["strategy=bald-star", "task.name=gsm8k"]).strategy == "bald-star"
    assert load_config(None, ["strategy=me+kcenter", "task.name=gsm8k"]).strategy == "me+kcenter"


def test_stability_signals_by_hand():
    first = ["a", "a", "b", "b"]
    second = ["a", "b", "b", "b"]
    signals = stability(first, second, [0.9, 0.6, 0.8, 0.7])
    # p_o = 3/4, p_e = (2·1 + 2·3)/16 = 1/2: κ = (0.75 − 0.5)/(1 − 0.5) = 0.5
    assert signals["agreement"] == pytest.approx(0.5)
    assert signals["changed"] == pytest.approx(0.25)
    assert signals["uncertainty"] == pytest.approx(1 - 0.75)
    assert stability(None, second, [1.0] * 4) == {"agreement": None, "changed": None,
                                                  "uncertainty": 0.0}
    rounds = [{"agreement": None}, {"agreement": 1.0}, {"agreement": 0.98},
              {"agreement": 1.0, "changed": 0.0, "uncertainty": 0.1}]
    summary = stopping_summary(rounds)
    assert summary["kappa_window"] == pytest.approx(2.98 / 3)
    assert summary["stop_advised"] is True  # (1.0 + 0.98 + 1.0)/3 = 0.9933 ≥ 0.99
    assert summary["changed"] == 0.0 and summary["uncertainty"] == 0.1
    assert summary["pool_uncertainty"] == [None, None, None, None]
    assert stopping_summary(rounds[:3])["stop_advised"] is False  # only two κ so far


def test_a_collapsed_model_is_never_advised_to_stop():
    """Four rounds answering "yes" to everything agree perfectly, and have learned nothing."""
    same = ["yes"] * 5
    assert stability(same, same, [0.9] * 5)["agreement"] is None
    rounds = [{"agreement": None}] + [stability(same, same, [0.9] * 5) for _ in range(3)]
    assert stopping_summary(rounds)["stop_advised"] is False
    # one example off the collapsed label: κ is defined again
    assert stability(same, ["yes"] * 4 + ["no"], [0.9] * 5)["agreement"] == pytest.approx(0.0)


def test_a_figures_strategies_never_share_a_colour():
    """Beyond the paper's strategies, colours are handed out per figure: four strategies whose
    table-wide colours used to coincide (tab20b cycled over 100+ names) get four colours."""
    names = ["random", "me", "me-star", "pe-star+badge", "entropy-star+badge", "pe+power",
             "entropy+power", "bald", "me-star+badge", "margin", "bald-star+kcenter"]
    colors = strategy_colors(names)
    assert len(set(colors.values())) == len(names)
    assert (colors["random"], colors["me"], colors["me-star"]) == ("tab:gray", "tab:red", "tab:purple")
