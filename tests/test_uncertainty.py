"""Acquisition math against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from star.active.mixing import dynamic_score, minmax, normalise_base, schedule_weight
from star.active.strategies import STRATEGIES, acquisition_scores, get_strategy, select_top
from star.errors import ConfigError
from star.model.passes import token_entropy, token_logprob


def test_entropy_of_uniform_is_log_vocab():
    logits = torch.zeros(3, 50)
    assert torch.allclose(token_entropy(logits), torch.full((3,), math.log(50)), atol=1e-5)


def test_entropy_of_known_distribution():
    probs = torch.tensor([0.5, 0.25, 0.25])
    expected = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))  # 1.0397
    assert float(token_entropy(probs.log())) == pytest.approx(expected, abs=1e-6)


def test_entropy_of_certain_prediction_is_zero():
    logits = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    assert float(token_entropy(logits)) == pytest.approx(0.0, abs=1e-4)


def test_entropy_is_accumulated_in_fp32_from_bf16_logits():
    logits = torch.randn(4, 1000).to(torch.bfloat16)
    out = token_entropy(logits)
    assert out.dtype == torch.float32
    assert torch.allclose(out, token_entropy(logits.float()))


def test_token_logprob_matches_hand_value():
    logits = torch.tensor([[math.log(0.2), math.log(0.3), math.log(0.5)]])
    assert float(token_logprob(logits, torch.tensor([2]))) == pytest.approx(math.log(0.5))


def test_minmax():
    assert minmax(np.array([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert minmax(np.array([5.0, 5.0])).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(("t", "expected"), [(0, 0.9), (1, 0.8), (4, 0.5), (9, 0.0), (15, 0.0)])
def test_linear_schedule_is_the_paper_codes(t, expected):
    assert schedule_weight(t, "linear") == pytest.approx(expected)


def test_other_schedules():
    assert schedule_weight(0, "exp", rate=0.5) == pytest.approx(math.exp(-0.5))
    assert schedule_weight(4, "cosine", total=10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))
    assert schedule_weight(9, "cosine", total=10) == pytest.approx(0.0)
    assert schedule_weight(3, "constant", constant=0.3) == 0.3


def test_dynamic_score_mixes_normalised_lists():
    base = np.array([0.0, 10.0, 5.0])   # -> 0, 1, 0.5
    full = np.array([4.0, 2.0, 0.0])    # -> 1, 0.5, 0
    mixed = dynamic_score(base, full, weight=0.9)
    assert mixed.tolist() == pytest.approx([0.1, 0.9 + 0.05, 0.45])
    assert dynamic_score(base, full, 0.9, mix="subtract").tolist() == pytest.approx([1, -0.5, -0.5])


def test_paper_normalisation_is_the_paper_codes():
    """μ_b min-max over the whole pool, then the unlabeled part; μ_f raw (`normalise: paper`)."""
    base = normalise_base(np.array([0.0, 10.0, 5.0, 20.0]), np.array([1, 2]), "paper")
    assert base.tolist() == [0.5, 0.25]
    full = np.array([4.0, 2.0])
    assert dynamic_score(base, full, 0.9, normalise="paper").tolist() == pytest.approx(
        [0.9 * 0.5 + 0.1 * 4, 0.9 * 0.25 + 0.1 * 2])
    assert dynamic_score(base, full, 0.9, mix="subtract", normalise="paper").tolist() == [3.5, 1.75]


def test_acquisition_scores_average_passes_then_mix():
    passes = np.array([[1.0, 6.0, 0.0], [3.0, 2.0, 2.0]])  # μ_f = mean 2, 4, 1 -> 1/3, 1, 0
    base = np.array([0.0, 1.0, 2.0])  # -> 0, 1/2, 1
    weight = schedule_weight(0, "linear")
    scores = acquisition_scores(get_strategy("me-star"), passes, base, weight=weight)
    assert scores.full.tolist() == [2.0, 4.0, 1.0]
    assert scores.weight == pytest.approx(0.9)
    # 0.9·μ_b + 0.1·μ_f: 0 + 1/30, 0.45 + 0.1, 0.9 + 0 (min-max of each pass first, then the
    # mean, would give μ_f 7/12, 1/2, 0 and 0.0583, 0.5, 0.9)
    assert scores.score.tolist() == pytest.approx([1 / 30, 0.55, 0.9])
    plain = acquisition_scores(get_strategy("me"), passes, None, weight=weight)
    assert plain.score.tolist() == [2.0, 4.0, 1.0]  # no mix: the mean over passes, raw


def test_strategy_table_composes_switches():
    star = STRATEGIES["pe-star"]
    assert (star.measure, star.dynamic, star.mc_dropout, star.l2_on_b) == ("pe", True, True, True)
    assert STRATEGIES["me+dynamic+l2"].mc_dropout is False
    assert STRATEGIES["random"].measure is None
    assert {"random", "me", "pe", "me-star", "pe-star", "me+dynamic", "me+dynamic+mc",
            "me+dynamic+l2", "pe+dynamic", "pe+dynamic+mc", "pe+dynamic+l2"} <= set(STRATEGIES)
    # random, then 6 batch rules × (5 measures × 5 switch sets + BALD's 3), typiclust and auto,
    # and each dynamic one (5 measures × 4 + BALD's 2) with the prefix typiclust-
    assert len(STRATEGIES) == 1 + 6 * (5 * 5 + 3) + 2 + 6 * (5 * 4 + 2)


def test_unknown_strategy_names_the_grammar():
    with pytest.raises(ConfigError, match="a strategy is random, or a measure"):
        get_strategy("entropy+magic")


def test_select_top_breaks_ties_by_position():
    assert select_top(np.array([0.1, 0.9, 0.5, 0.9]), 3).tolist() == [1, 3, 2]
