"""`auto`'s bandit (ALBL with Exp4.P, `star.active.bandit`): the floor, the draw, the importance
weights, the reward and the update checked against numbers worked out by hand; exact replay
through JSON; the config keys."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from star.active.bandit import (
    BanditState,
    Pick,
    default_floor,
    draw,
    iw_accuracy,
    probabilities,
    update,
)
from star.active.strategies import get_strategy
from star.config import BanditConfig, StarConfig, config_text, load_config
from star.errors import ConfigError
from star.seeding import numpy_rng

ARMS = ("random", "me", "margin")
IDS = ["a", "b", "c", "d", "e"]
RANKINGS = {"me": np.array([2, 0, 1, 3, 4]), "margin": np.array([2, 3, 0, 1, 4])}


def test_probabilities_mix_the_weights_above_the_floor():
    # w/W = (1, 1, 2)/4; (1 − 3·0.05)·w/W + 0.05 = 0.85·(0.25, 0.25, 0.5) + 0.05
    state = BanditState(ARMS, (0.0, 0.0, math.log(2)))
    assert probabilities(state, 0.05) == pytest.approx([0.2625, 0.2625, 0.475], abs=1e-12)
    assert probabilities(state, 0.0) == pytest.approx([0.25, 0.25, 0.5], abs=1e-12)
    assert probabilities(state, 1 / 3) == pytest.approx([1 / 3] * 3, abs=1e-12)  # no learning
    assert probabilities(BanditState(ARMS, (0.0, 800.0, 800.0)), 0.1) == pytest.approx(
        [0.1, 0.45, 0.45], abs=1e-12)  # large log-weights do not overflow
    with pytest.raises(ValueError, match=r"floor must be in \[0, 1/3\]"):
        probabilities(state, 0.34)


def test_default_floor_is_libacts():
    # √(ln 2 / (2·2)) = √0.173287 = 0.416277; √(ln 4 / (4·112)) = √0.0030944 = 0.055627
    assert default_floor(2, 2) == pytest.approx(0.416277, abs=1e-6)
    assert default_floor(4, 112) == pytest.approx(0.055627, abs=1e-6)


def test_a_picks_importance_and_credit():
    # shares (random, me, margin) = (0.2, 0.5, 0.3), 10 candidates, me advised the pick:
    # q = 0.5 + 0.2/10 = 0.52; ω = 1/(10·0.52); credit: random 0.1/0.52, me 1/0.52, margin 0
    pick = Pick("a", "me", ("me",), 0.52, 10)
    assert pick.importance == pytest.approx(1 / 5.2, abs=1e-12)
    assert [pick.credit(arm) for arm in ARMS] == pytest.approx([0.1 / 0.52, 1 / 0.52, 0.0])
    assert Pick.from_json(json.loads(json.dumps(pick.to_json()))) == pick


def test_iw_accuracy_weighs_each_bought_label_by_one_over_r_q():
    # ω = 1/(4·0.125) = 2, 1/(10·0.5) = 0.2, 1/(5·0.05) = 4; the first two right: 2.2/8
    picks = [Pick("a", "random", (), 0.125, 4), Pick("b", "me", ("me",), 0.5, 10),
             Pick("c", "random", (), 0.05, 5)]
    assert iw_accuracy(picks, [True, True, False], horizon=8) == pytest.approx(0.275, abs=1e-12)
    assert iw_accuracy(picks, [False, False, True], horizon=8) == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(ValueError, match="3 picks but 2 answers"):
        iw_accuracy(picks, [True, True], horizon=8)


def test_iw_accuracy_weighs_the_classes_alike_given_the_labels():
    """The picks above with labels (a, a, b): Ω = 6.2, Ω_a = 2.2, Ω_b = 4, so a's picks weigh
    6.2/(2·2.2) = 1.409091 each and b's 6.2/8 = 0.775. Right on a's two: (2 + 0.2)·1.409091/8 =
    3.1/8 = 0.3875, which is Ω/T = 0.775 times the mean recall (1 + 0)/2; right on b's one:
    4·0.775/8 = 0.3875 too, where the plain reward gave 0.275 and 0.5."""
    picks = [Pick("a", "random", (), 0.125, 4), Pick("b", "me", ("me",), 0.5, 10),
             Pick("c", "random", (), 0.05, 5)]
    golds = ["a", "a", "b"]
    assert iw_accuracy(picks, [True, True, False], 8, golds) == pytest.approx(0.3875, abs=1e-12)
    assert iw_accuracy(picks, [False, False, True], 8, golds) == pytest.approx(0.3875, abs=1e-12)
    assert iw_accuracy(picks, [True, False, False], 8, golds) == pytest.approx(
        2 * 6.2 / (2 * 2.2) / 8, abs=1e-12)
    one_class = ["a", "a", "a"]  # nothing to balance: the plain reward
    assert iw_accuracy(picks, [True, True, False], 8, one_class) == pytest.approx(0.275, abs=1e-12)
    with pytest.raises(ValueError, match="3 picks but 3 answers and 2 labels"):
        iw_accuracy(picks, [True, True, False], 8, ["a", "b"])


def test_update_is_exp4p_one_step_per_pick():
    """Arms (random, me) with shares (0.3, 0.7) (log-weights (0, ln 3), floor 0.1), δ = 0.1,
    T = 4, reward 0.5. Bonus κ = √(ln(2/0.1)/(2·4)) = √(2.995732/8) = 0.611937.
    Pick 1: me's advice, 4 candidates: q = 0.7 + 0.3/4 = 0.775; credits random 0.25/0.775 =
    0.322581, me 1/0.775 = 1.290323. Pick 2: random, 3 candidates, not me's advice: q = 0.1;
    credits random (1/3)/0.1 = 3.333333, me 0.
    gain random = 0.5·(0.322581 + 3.333333) + 2·κ/0.3 = 1.827957 + 4.079578 = 5.907535;
    gain me = 0.5·1.290323 + 2·κ/0.7 = 0.645161 + 1.748391 = 2.393552.
    ln w += (0.1/2)·gain: random 0 + 0.295377, me 1.098612 + 0.119678 = 1.218290."""
    state = BanditState(("random", "me"), (0.0, math.log(3)))
    shares = probabilities(state, 0.1)
    assert shares == pytest.approx([0.3, 0.7], abs=1e-12)
    picks = [Pick("b", "me", ("me",), 0.775, 4), Pick("d", "random", (), 0.1, 3)]
    after = update(state, shares, picks, 0.5, floor=0.1, delta=0.1, horizon=4)
    assert after.arms == state.arms
    assert after.log_weights == pytest.approx([0.295377, 1.218290], abs=1e-6)
    # no reward: only the bonus moves the weights, and more for the arm drawn less often
    quiet = update(state, shares, picks, 0.0, floor=0.1, delta=0.1, horizon=4)
    assert quiet.log_weights == pytest.approx([0.203979, 1.098612 + 0.087420], abs=1e-6)


def test_update_with_three_arms_two_picks_and_five_steps():
    """N = 3 arms, 2 picks, T = 5, so a mutation that swaps any of them shows. Log-weights
    (0, ln 2, ln 3), floor 0.1: shares 0.7·(1, 2, 3)/6 + 0.1 = (0.216667, 0.333333, 0.45).
    κ = √(ln(3/0.1)/(3·5)) = √(3.401197/15) = 0.476179.
    Pick 1, me's advice of 4 candidates: q = 0.333333 + 0.216667/4 = 0.3875.
    Pick 2, margin's advice of 3: q = 0.45 + 0.216667/3 = 0.522222.
    Credits: random 0.25/0.3875 + (1/3)/0.522222 = 1.283459, me 1/0.3875 = 2.580645,
    margin 1/0.522222 = 1.914894. Reward 0.5, gain = 0.5·credit + 2·κ/share:
    random 0.641730 + 4.395499 = 5.037229, me 1.290323 + 2.857074 = 4.147397,
    margin 0.957447 + 2.116351 = 3.073798. ln w += (0.1/2)·gain: 0.251861, 0.693147 + 0.207370
    = 0.900517, 1.098612 + 0.153690 = 1.252302."""
    state = BanditState(("random", "me", "margin"), (0.0, math.log(2), math.log(3)))
    shares = probabilities(state, 0.1)
    assert shares == pytest.approx([0.216667, 0.333333, 0.45], abs=1e-6)
    picks = [Pick("b", "me", ("me",), 0.3875, 4), Pick("c", "margin", ("margin",), 0.522222, 3)]
    after = update(state, shares, picks, 0.5, floor=0.1, delta=0.1, horizon=5)
    assert after.log_weights == pytest.approx([0.251861, 0.900517, 1.252302], abs=1e-5)


def test_draw_takes_each_arms_next_advice_without_replacement():
    rng = numpy_rng(0, 1, "bandit")
    positions, picks = draw(ARMS, np.array([0.0, 0.5, 0.5]), RANKINGS, IDS, 3, rng=rng)
    # both ranked arms advise c (position 2) first: q = 0.5 + 0.5 + 0/5
    assert (positions[0], picks[0].advisers, picks[0].probability) == (2, ("me", "margin"), 1.0)
    assert picks[0].arm in ("me", "margin") and picks[0].candidates == 5
    # then me advises a (0), margin d (3): each pick is its arm's alone, q = 0.5
    second = {"me": 0, "margin": 3}[picks[1].arm]
    assert (positions[1], picks[1].advisers, picks[1].probability) == (second,
                                                                      (picks[1].arm,), 0.5)
    # the third: me's next untaken (b after a, else a), margin's next untaken (d, else a)
    me_next, margin_next = (1, 3) if second == 0 else (0, 0)
    advice = {"me": me_next, "margin": margin_next}
    assert positions[2] == advice[picks[2].arm]
    assert picks[2].probability == (1.0 if me_next == margin_next else 0.5)
    assert [p.id for p in picks] == [IDS[i] for i in positions] and len(set(positions)) == 3


def test_random_arm_draws_uniformly_from_what_is_left():
    rng = numpy_rng(0, 2, "bandit")
    positions, picks = draw(ARMS, np.array([1.0, 0.0, 0.0]), RANKINGS, IDS, 5, rng=rng)
    assert sorted(positions) == [0, 1, 2, 3, 4]
    assert [p.candidates for p in picks] == [5, 4, 3, 2, 1]
    assert [p.probability for p in picks] == pytest.approx([1 / 5, 1 / 4, 1 / 3, 1 / 2, 1])
    assert [p.importance for p in picks] == pytest.approx([1.0] * 5)  # ω = 1 for uniform draws


def test_a_picks_probability_is_the_whole_mixture():
    """q counts random's share of every example, whichever arm was drawn."""
    shares = np.array([0.25, 0.75, 0.0])
    for round_index in range(1, 4):
        _, picks = draw(ARMS, shares, RANKINGS, IDS, 4, rng=numpy_rng(0, round_index, "bandit"))
        for pick in picks:
            ranked = 0.75 if "me" in pick.advisers else 0.0
            assert pick.probability == pytest.approx(ranked + 0.25 / pick.candidates, abs=1e-12)
        assert any(pick.advisers for pick in picks)


def test_the_recorded_probability_is_how_often_the_draw_picks_it():
    """One draw, 2000 seeds: me advises a with 0.6 + 0.4/4 = 0.7, the others 0.1 each."""
    rankings = {"me": np.array([0, 1, 2, 3])}
    counts = np.zeros(4)
    recorded = {}
    for seed in range(2000):
        positions, picks = draw(("random", "me"), np.array([0.4, 0.6]), rankings, IDS[:4], 1,
                                rng=numpy_rng(seed, 1, "bandit"))
        counts[positions[0]] += 1
        recorded[int(positions[0])] = picks[0].probability
    assert recorded == pytest.approx({0: 0.7, 1: 0.1, 2: 0.1, 3: 0.1})
    assert counts / 2000 == pytest.approx([0.7, 0.1, 0.1, 0.1], abs=0.03)  # 3 sd


def test_draw_refuses_short_rankings():
    with pytest.raises(ValueError, match="arm 'me' ranks fewer than 3 distinct examples"):
        draw(ARMS, np.array([0.2, 0.4, 0.4]), {**RANKINGS, "me": np.array([2, 2, 0])}, IDS, 3,
             rng=numpy_rng(0, 1, "bandit"))
    with pytest.raises(ValueError, match="include random"):
        BanditState.start(["me", "margin"])


def _rounds(first: int, last: int, state: BanditState, bought: list[Pick]) -> list[str]:
    """Rounds first..last of a toy run (a 30-example pool, 4 picks a round, an answer right
    when its id is even), each round's record as results.json would hold it."""
    ids = [str(i) for i in range(30)]
    records = []
    for k in range(first, last + 1):
        left = [i for i in ids if i not in {p.id for p in bought}]
        rankings = {"me": np.arange(len(left))[::-1], "margin": np.arange(len(left))}
        shares = probabilities(state, 0.2)
        _, picks = draw(ARMS, shares, rankings, left, 4, rng=numpy_rng(7, k, "bandit"))
        bought += picks
        reward = iw_accuracy(bought, [int(p.id) % 2 == 0 for p in bought], horizon=12)
        state = update(state, shares, picks, reward, floor=0.2, delta=0.1, horizon=12)
        records.append(json.dumps({"probabilities": list(shares), "reward": reward,
                                   "picks": [p.to_json() for p in picks],
                                   "state": state.to_json()}))
    return records


def test_a_resumed_run_replays_exactly_from_its_records():
    straight = _rounds(1, 3, BanditState.start(ARMS), [])
    first = json.loads(straight[0])  # killed after round 1: only its record survives
    resumed = _rounds(2, 3, BanditState.from_json(first["state"]),
                      [Pick.from_json(p) for p in first["picks"]])
    assert resumed == straight[1:]
    assert BanditState.from_json(json.loads(straight[-1])["state"]).log_weights != (0.0,) * 3


def test_auto_strategy_and_its_config_keys():
    auto = get_strategy("auto")
    assert auto.bandit and auto.measure is None
    config = load_config(None, ["strategy=auto"])
    assert config.bandit.arms == ["random", "me-star", "margin", "typiclust"]
    assert (config.bandit.floor, config.bandit.delta) == (None, 0.1)
    assert load_config(None, ["bandit.arms=[random, me]", "bandit.floor=0.5"]).bandit.floor == 0.5


@pytest.mark.parametrize(("overrides", "arms"), [
    ([], ["random", "me-star", "margin", "typiclust"]),
    (["task.name=gsm8k"], ["random", "me-star", "typiclust"]),  # no label distribution
    (["lora.dropout=0"], ["random", "margin", "typiclust"]),  # no MC dropout
    (["task.name=gsm8k", "lora.dropout=0"], ["random", "typiclust"]),
    (["strategy=me", "task.name=gsm8k"], ["random", "me-star", "typiclust"]),
])
def test_default_arms_are_those_the_task_allows_and_are_saved(overrides: list[str],
                                                               arms: list[str]):
    """Unless told, `auto` runs every default arm the task and LoRA allow, and config.yaml says
    which (a saved config reads back with the same arms, whatever the defaults become)."""
    config = load_config(None, overrides)
    assert config.bandit.arms == arms
    saved = yaml.safe_load(config_text(config))
    assert saved["bandit"]["arms"] == arms
    assert StarConfig.model_validate(saved).bandit.arms == arms
    given = BanditConfig()
    assert StarConfig(bandit=given).bandit.arms and given.arms is None  # resolved in a copy


@pytest.mark.parametrize(("overrides", "message"), [
    (["bandit.arms=[random, nope]"], r"bandit.arms: 'nope' cannot be an arm; an arm is any "
                                     r"strategy but auto: random, or a measure"),
    (["bandit.arms=[random, auto]"], r"bandit.arms: 'auto' cannot be an arm"),
    (["bandit.arms=[me, margin]"], r"bandit.arms \['me', 'margin'\] must name distinct "
                                   r"strategies, random and at least one more"),
    (["bandit.arms=[random, me, me]"], r"must name distinct strategies"),
    (["bandit.floor=0.3"], r"bandit.floor \(0.3\) must be in \(0, 1/4\] with 4 arms"),
    (["bandit.floor=0"], r"config key 'bandit.floor': Input should be greater than 0"),
    (["bandit.delta=1"], r"config key 'bandit.delta': Input should be less than 1"),
    (["strategy=auto", "task.name=gsm8k", "bandit.arms=[random, margin]"],
     r"bandit.arms: strategy 'margin' reads a label distribution, which a generative task has "
     r"not"),
    (["strategy=auto", "lora.dropout=0", "bandit.arms=[random, me-star]"],
     r"bandit.arms: strategy 'me-star' samples LoRA dropout masks"),
])
def test_bad_bandit_config_names_the_key(overrides: list[str], message: str):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)
