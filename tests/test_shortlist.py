"""MC dropout on a shortlist (`selection.shortlist`): the pure merge and ranking, checked by
hand; the two passes on the tiny model, against full MC; the saved-files check of
docs/label-savings/shortlist_check.py on a hand-made run."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from star.active.runfolder import ScoringParts
from star.active.scorer import Scoring, score_in_parts, score_with_shortlist
from star.active.shortlist import merge_passes, merge_rows, shortlist_first, shortlist_rows
from star.active.strategies import acquisition_scores, get_strategy, select_top
from star.config import LoraConfig, load_config
from star.data.sources import load_task
from star.errors import ConfigError
from star.model.loading import load_model
from star.model.lora import attach_lora
from star.seeding import torch_generator
from tests.test_acquisition_runs import _randomise_b

ME_STAR = get_strategy("me-star")


# -- the pure part ----------------------------------------------------------------------------
def test_the_shortlist_is_the_highest_one_pass_scores_in_pool_order():
    first = np.array([0.1, 0.9, 0.5, 0.9, 0.3])
    assert shortlist_rows(first, 3).tolist() == [1, 2, 3]  # pool order, not score order
    assert shortlist_rows(first, 1).tolist() == [1]  # a tie: the earlier position
    assert shortlist_rows(first, 9).tolist() == [0, 1, 2, 3, 4]


def test_shortlisted_columns_take_the_k_passes_and_the_others_repeat_their_one():
    first = np.array([[1.0, 2.0, 3.0, 4.0]])
    shortlisted = np.array([[10.0, 20.0], [11.0, 21.0], [12.0, 22.0]])
    merged = merge_passes(first, shortlisted, np.array([1, 3]))
    assert merged.tolist() == [[1, 10, 3, 20], [1, 11, 3, 21], [1, 12, 3, 22]]
    assert merged.mean(axis=0).tolist() == [1.0, 11.0, 3.0, 21.0]
    probs = merge_rows(np.array([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]]), np.array([[0.3, 0.7]]),
                       np.array([2]))
    assert probs.tolist() == [[0.5, 0.5], [0.2, 0.8], [0.3, 0.7]]
    assert merge_rows(None, None, np.array([0])) is None


def test_outside_scores_fall_strictly_below_the_shortlist_in_their_own_order():
    # span 1, so the outside ones move down by 2: 1.0 -> -1.0, 0.5 -> -1.5
    moved = shortlist_first(np.array([1.0, 0.0, 0.5]), np.array([1]))
    assert moved.tolist() == [-1.0, 0.0, -1.5]
    # the outside example was ahead (1.0 > 0.0) and comes earlier: moved by the span alone it
    # would tie, and a tie goes to the earlier index
    assert select_top(moved, 1).tolist() == [1]
    assert select_top(moved, 3).tolist() == [1, 0, 2]
    whole = np.array([0.3, 0.1, 0.2])
    assert shortlist_first(whole, np.arange(3)).tolist() == whole.tolist()


def test_a_shortlist_of_the_whole_pool_gives_exactly_the_k_pass_scores():
    rng = np.random.default_rng(0)
    passes, base = rng.random((3, 7)), rng.random(7)
    every = np.arange(7)
    merged = merge_passes(passes[:1] + 5.0, passes, every)  # the one pass is overwritten
    today = acquisition_scores(ME_STAR, passes, base, weight=0.7)
    shortlisted = acquisition_scores(ME_STAR, merged, base, weight=0.7)
    assert np.array_equal(shortlist_first(shortlisted.score, every), today.score)


# -- the passes on the tiny model -------------------------------------------------------------
@pytest.fixture
def tuned(tiny_overrides):
    """The toy task and the tiny model with a LoRA whose B ≠ 0, so dropout masks matter."""
    config = load_config(None, tiny_overrides)
    loaded = load_model(config.model)
    attach_lora(loaded, LoraConfig(r=4, alpha=8, dropout=0.3), seed=0)
    _randomise_b(loaded)
    return load_task(config.task), loaded


SCORING = Scoring("me", passes=3, batch_size=8, max_length=64, part_size=4)


def _masks(phase: str):
    return lambda part: torch_generator(0, 1, phase, part=part)


def _shortlisted(task, loaded, examples, size, base, store=None):
    return score_with_shortlist(
        loaded, task, examples, SCORING, size=size, features=True, store=store,
        rank=lambda passes: acquisition_scores(ME_STAR, passes, base, weight=0.5).score,
        masks=_masks("mc_dropout"), first_masks=_masks("mc_first_pass"))


def test_a_shortlist_of_the_whole_pool_scores_as_full_mc_does(tuned):
    task, loaded = tuned
    examples = task.train[:10]  # three parts of 4
    full = score_in_parts(loaded, task, examples, SCORING, masks=_masks("mc_dropout"),
                          features=True)
    assert not np.allclose(full.passes[0], full.passes[1])  # the masks change the scores
    merged, rows = _shortlisted(task, loaded, examples, 10, np.linspace(0, 1, 10))
    assert rows.tolist() == list(range(10))
    assert np.array_equal(merged.passes, full.passes)
    assert np.array_equal(merged.probs, full.probs) and np.array_equal(merged.hidden, full.hidden)


def test_the_k_passes_score_the_shortlist_and_the_picks_come_from_it(tuned):
    task, loaded = tuned
    examples, base = task.train[:10], np.linspace(1, 0, 10)
    merged, rows = _shortlisted(task, loaded, examples, 3, base)
    one = score_in_parts(loaded, task, examples, replace(SCORING, passes=1),
                         masks=_masks("mc_first_pass"))
    expected = np.sort(select_top(acquisition_scores(ME_STAR, one.passes, base, weight=0.5).score, 3))
    assert rows.tolist() == expected.tolist()
    short = score_in_parts(loaded, task, [examples[i] for i in rows], SCORING,
                           masks=_masks("mc_dropout"))
    assert np.array_equal(merged.passes[:, rows], short.passes)
    outside = np.setdiff1d(np.arange(10), rows)
    assert np.array_equal(merged.passes[:, outside], np.repeat(one.passes[:, outside], 3, axis=0))
    scores = acquisition_scores(ME_STAR, merged.passes, base, weight=0.5)
    picks = select_top(shortlist_first(scores.score, rows), 2)
    assert set(picks.tolist()) <= set(rows.tolist())


def test_a_killed_shortlist_pass_resumes_to_the_same_scores(tuned, tmp_path):
    task, loaded = tuned
    examples, base = task.train[:10], np.linspace(0, 1, 10)
    store = ScoringParts(tmp_path / "scoring")
    merged, rows = _shortlisted(task, loaded, examples, 5, base, store)
    assert sorted(p.name for p in (tmp_path / "scoring" / "first").iterdir()) == \
        ["000000.npz", "000001.npz", "000002.npz"]
    (tmp_path / "scoring" / "first" / "000001.npz").unlink()  # killed within the one pass
    (tmp_path / "scoring" / "000001.npz").unlink()
    again, rows_again = _shortlisted(task, loaded, examples, 5, base, store)
    assert np.array_equal(rows_again, rows) and np.array_equal(again.passes, merged.passes)
    assert np.array_equal(again.hidden, merged.hidden)


# -- the config key ---------------------------------------------------------------------------
def test_the_shortlist_key_is_off_by_default_and_refused_where_it_cannot_rank():
    assert load_config(None, []).selection.shortlist == 0
    assert load_config(None, ["selection.shortlist=4"]).selection.shortlist == 4
    with pytest.raises(ConfigError, match=r"selection.shortlist"):
        load_config(None, ["selection.shortlist=-1"])
    with pytest.raises(ConfigError, match=r"selection.shortlist .*'bald-star' measures disagreement"):
        load_config(None, ["strategy=bald-star", "selection.shortlist=2"])
    with pytest.raises(ConfigError, match=r"selection.shortlist .*'me-star\+power' samples"):
        load_config(None, ["strategy=me-star+power", "selection.shortlist=2"])
    assert load_config(None, ["strategy=bald-star"]).selection.shortlist == 0


# -- the saved-files check --------------------------------------------------------------------
def _script():
    path = Path(__file__).resolve().parents[1] / "docs" / "label-savings" / "shortlist_check.py"
    spec = importlib.util.spec_from_file_location("shortlist_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(base, passes, selected):
    return [{"id": f"e{i}", "base": b, "passes": list(p), "full": sum(p) / len(p), "score": 0.0,
             "selected": i in selected} for i, (b, p) in enumerate(zip(base, passes, strict=True))]


@pytest.fixture
def saved_run(tmp_path) -> Path:
    """Two rounds of a me-star run (K = 2, step 1), scores chosen so that the shortlist's picks
    can be worked out by hand (see the test)."""
    folder = tmp_path / "run"
    for k, rows in ((1, _rows([0, 4, 3, 0, 4], [(0, 0), (2, 6), (4, 12), (10, 2), (0, 0)], {2})),
                    (2, _rows([0, 0, 0, 0], [(10, 0), (6, 2), (0, 0), (0, 0)], {0}))):
        (folder / "rounds" / str(k)).mkdir(parents=True)
        (folder / "rounds" / str(k) / "scores.jsonl").write_text(
            "".join(json.dumps(row) + "\n" for row in rows))
    (folder / "config.yaml").write_text("uncertainty:\n  mix: weighted\n  normalise: pool\n")
    (folder / "results.json").write_text(json.dumps({
        "strategy": "me-star", "lambda": {"1": 0.5, "2": 0.4},
        "rounds": [{"round": 0, "score_seconds": 1.0}, {"round": 1, "score_seconds": 30.0},
                   {"round": 2, "score_seconds": 20.0}]}))
    return folder


def test_the_check_replays_the_shortlist_on_saved_scores(saved_run, tmp_path):
    # Round 1 (λ 0.5): μ_b -> 0, 1, .75, 0, 1; μ_f = 0, 4, 8, 6, 0 -> 0, .5, 1, .75, 0: the
    # mix 0, .75, .875, .375, .5 picks 2, as the run did. The first pass 0, 2, 4, 10, 0 -> 0,
    # .2, .4, 1, 0 mixes to 0, .6, .575, .5, .5: a shortlist of 1 holds example 1 alone, which
    # is picked; of 2 it holds 1 and 2, whose μ_f 4, 8 beside the others' 0, 10, 0 mix to
    # 0, .7, .775, .5, .5, and 2 is picked.
    # Round 2 (μ_b constant): the first pass 10, 6, 0, 0 shortlists example 0, whose two passes
    # average 5, below example 1's one pass 6: only moved below the shortlist does 1 not win.
    check = _script().main([str(saved_run), "--shortlist", "1", "--json", str(tmp_path / "o.json")])
    (report,) = check
    assert [(r["round"], r["identical"], r["in_shortlist"]) for r in report["rounds"]] == \
        [(1, 0, 0), (2, 1, 1)]
    assert report["identical_share"] == 0.5 and report["in_shortlist_share"] == 0.5
    # forward passes: 5 + 2·1 and 4 + 2·1 against 2·5 and 2·4
    assert report["pass_share"] == pytest.approx(13 / 18)
    assert [r["score_seconds"] for r in report["rounds"]] == [30.0, 20.0]
    assert json.loads((tmp_path / "o.json").read_text()) == check
    (wider,) = _script().main([str(saved_run), "--shortlist", "2"])
    assert wider["identical_share"] == 1.0


def test_the_check_refuses_what_it_cannot_replay(saved_run):
    rows = [json.loads(line) for line in (saved_run / "rounds/1/scores.jsonl").read_text().splitlines()]
    rows[2]["selected"], rows[1]["selected"] = False, True
    (saved_run / "rounds/1/scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="does not give the run's picks"):
        _script().main([str(saved_run)])
    results = json.loads((saved_run / "results.json").read_text())
    (saved_run / "results.json").write_text(json.dumps({**results, "strategy": "me"}))
    with pytest.raises(ValueError, match="not a top-k MC-dropout strategy"):
        _script().main([str(saved_run)])
