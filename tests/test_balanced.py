"""`+balanced`: the batch filled class by class, the rarest predicted class first and the best
score first within a class, against hand-worked picks; the names it takes and the tasks it
refuses."""

from __future__ import annotations

import numpy as np
import pytest

from star.active.diversity import class_balanced
from star.active.strategies import STRATEGIES, get_strategy, select_batch
from star.config import load_config
from star.errors import ConfigError
from star.tools.cli import main


def one_hot(classes: list[int], width: int) -> np.ndarray:
    """Label distributions [n, width] whose most probable label is each of `classes`."""
    probs = np.full((len(classes), width), 0.1 / (width - 1))
    probs[np.arange(len(classes)), classes] = 0.9
    return probs


# Predicted classes: 0 four times, 1 once, 2 twice, 3 never: rarest first is 1, 2, 0.
PREDICTED = [0, 0, 0, 0, 1, 2, 2]
SCORES = np.array([0.9, 0.1, 0.5, 0.7, 0.2, 0.3, 0.8])
PROBS = one_hot(PREDICTED, 4)
# Queues by score: class 1 [4]; class 2 [6 (0.8), 5 (0.3)]; class 0 [0, 3, 2, 1].


def test_the_rarest_class_comes_first_and_the_best_score_within_it():
    # plain top-2 would take 0 and 6; most common first would take 0 (class 0) and 6 (class 2);
    # class 2 by index instead of score would take 5
    assert class_balanced(SCORES, PROBS, 2).tolist() == [4, 6]


def test_classes_take_turns_and_an_exhausted_class_sits_out():
    # turn 1: 4, 6, 0; turn 2: class 1 is empty, so 5, 3; turn 3: 2; turn 4: 1
    assert class_balanced(SCORES, PROBS, 5).tolist() == [4, 6, 0, 5, 3]
    assert class_balanced(SCORES, PROBS, 7).tolist() == [4, 6, 0, 5, 3, 2, 1]


def test_ties_go_to_the_earlier_label_and_the_lower_index():
    # two classes predicted twice each: class 0 (the earlier label) first; equal scores in it
    probs = one_hot([1, 0, 1, 0], 2)
    assert class_balanced(np.array([0.5, 0.5, 0.5, 0.9]), probs, 3).tolist() == [3, 0, 1]


def test_each_class_gets_its_share_or_all_it_has():
    """Random pools: a class's picks are k // C or one more (the rarer classes get the extra
    ones), or everything it has; within a class, the highest scores."""
    rng = np.random.default_rng(0)
    shared = 0  # draws where some class had more than its share: the share rule was tested
    for _ in range(50):
        n, width = int(rng.integers(1, 40)), int(rng.integers(2, 5))
        probs = rng.dirichlet(np.ones(width), size=n)
        scores = rng.random(n)
        k = int(rng.integers(0, n + 1))
        picks = class_balanced(scores, probs, k)
        assert len(set(picks.tolist())) == len(picks) == k
        predicted = probs.argmax(axis=1)
        sizes = np.bincount(predicted, minlength=width)
        taken = np.bincount(predicted[picks], minlength=width)
        short = taken < sizes  # classes with examples left over
        if short.any():
            shared += 1
            assert taken[short].max() - taken[short].min() <= 1
            # the extra picks went to the rarer classes
            order = sorted(np.flatnonzero(short), key=lambda c: (sizes[c], c))
            assert list(taken[order]) == sorted(taken[order], reverse=True)
        for c in range(width):
            mine = np.flatnonzero(predicted == c)
            best = mine[np.argsort(-scores[mine], kind="stable")][:taken[c]]
            assert set(picks[predicted[picks] == c].tolist()) == set(best.tolist())
    assert shared >= 25, shared


def test_bad_arguments_are_refused():
    assert class_balanced(SCORES, PROBS, 0).tolist() == []
    with pytest.raises(ValueError, match="cannot pick 8 of 7"):
        class_balanced(SCORES, PROBS, 8)
    with pytest.raises(ValueError, match="must agree on n"):
        class_balanced(SCORES, PROBS[:3], 2)


def test_the_names_parse_and_select_batch_applies_the_rule():
    for name in ("me+balanced", "me-star+balanced", "margin+balanced"):
        assert get_strategy(name).rule == "balanced" and not get_strategy(name).features
    star = get_strategy("me-star+balanced")
    assert (star.measure, star.dynamic, star.mc_dropout, star.l2_on_b) == ("me", True, True, True)
    assert "random+balanced" not in STRATEGIES
    strategy = get_strategy("me+balanced")
    # no random draw: any generator gives the same picks
    for seed in (0, 1):
        assert select_batch(strategy, SCORES, 2, rng=np.random.default_rng(seed),
                            probs=PROBS).tolist() == [4, 6]
    with pytest.raises(ValueError, match="label distribution"):
        select_batch(strategy, SCORES, 2, rng=np.random.default_rng(0))


def test_generative_tasks_refuse_it_in_one_line(tmp_path, capsys):
    with pytest.raises(ConfigError, match="'me-star\\+balanced' reads a label distribution"):
        load_config(None, ["strategy=me-star+balanced", "task.name=gsm8k"])
    assert load_config(None, ["strategy=margin+balanced"]).strategy == "margin+balanced"
    code = main(["run", "--strategy", "me+balanced", "--set", "task.name=gsm8k",
                 "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1 and "generative task" in error
