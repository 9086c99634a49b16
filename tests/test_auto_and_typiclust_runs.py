"""`auto` and TypiClust in whole runs on the tiny model: what `auto` records per round (the
shares it drew with, its picks, the reward, the updated log-weights) replayed from its own
records and the saved adapters; TypiClust's picks against the typicality functions on the run's
saved hidden states; exact replay after kill -9 and after a stop around the batch's writing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from star.active import loop as loop_module
from star.active.bandit import BanditState, Pick, default_floor, iw_accuracy, probabilities, update
from star.active.loop import subsample
from star.active.runfolder import RunFolder
from star.active.typicality import (
    Clusters,
    cluster_pool,
    typical_scores,
    typiclust,
    unit_rows,
)
from star.config import load_config
from star.data.sources import load_task
from star.data.table import positions_of
from star.files import read_arrays
from star.model.loading import load_model
from star.model.lora import attach_lora, load_adapter
from star.model.passes import predict
from star.seeding import derived_seed, numpy_rng
from star.tools.cli import main
from tests.test_loop import read_jsonl
from tests.test_replay import differing, launch, rounds_done, run_argv, run_files, wait_for

POOL, WARM_START, STEP, BUDGET = 60, 8, 8, 24  # tiny_settings
HORIZON = BUDGET - WARM_START  # T: the bandit's picks


def results_of(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("balance", ["none", "classes"])
def test_an_auto_run_records_and_replays_its_bandit(tiny_overrides, tmp_path, balance):
    """Each round's shares are the floor-mixed weights of the round before; its picks are the
    batch, each from an arm, over the R examples unlabeled at its draw; its reward is IW-ACC of
    the round's adapter on every label the bandit bought (its classes weighing alike under the
    class-balanced loss), and its log-weights Exp4.P's update."""
    out = tmp_path / "auto"
    assert main(run_argv(out, "auto", [*tiny_overrides, f"train.balance={balance}"])) == 0
    results, config = results_of(out), load_config(out / "config.yaml")
    arms = ["random", "me-star", "margin", "typiclust"]
    assert config.bandit.arms == arms and "bandit_draw" not in results
    floor = default_floor(4, HORIZON)
    assert floor == pytest.approx(math.sqrt(math.log(4) / 64), abs=1e-15)  # 0.147
    rounds = results["rounds"]
    assert [r["n_labeled"] for r in rounds] == [8, 16, 24] and "bandit" not in rounds[0]
    task = load_task(config.task)
    by_id = {e.id: e for e in task.train}
    loaded = load_model(config.model)
    attach_lora(loaded, config.lora, derived_seed(0, 0, "lora_init"))
    state, bought = BanditState.start(arms), []
    for entry in rounds[1:]:
        k, record = entry["round"], entry["bandit"]
        shares = np.array(record["probabilities"])
        assert record["arms"] == arms
        assert shares.sum() == pytest.approx(1.0, abs=1e-12) and (shares >= floor - 1e-15).all()
        assert shares.tolist() == probabilities(state, floor).tolist()
        picks = [Pick.from_json(p) for p in record["picks"]]
        assert sorted(p.id for p in picks) == sorted(entry["selected_ids"])
        assert {p.arm for p in picks} <= set(arms)
        unlabeled = POOL - rounds[k - 1]["n_labeled"]
        assert [p.candidates for p in picks] == list(range(unlabeled, unlabeled - STEP, -1))
        bought += picks
        load_adapter(loaded.model, out / "rounds" / str(k) / "adapter")  # the guard is off
        answers = predict(loaded, task, [by_id[p.id] for p in bought], batch_size=16,
                          max_length=64)
        golds = [a.gold for a in answers] if balance == "classes" else None
        reward = iw_accuracy(bought, [bool(a.correct) for a in answers], HORIZON, golds)
        assert record["reward"] == pytest.approx(reward, abs=1e-12)
        if balance == "classes":
            assert len(set(golds)) > 1  # classes to balance: the weighted reward differs
            assert reward != pytest.approx(iw_accuracy(bought, [bool(a.correct)
                                                                for a in answers], HORIZON))
        assert 0 <= record["reward"] <= sum(p.importance for p in bought) / HORIZON
        state = update(state, shares, picks, record["reward"], floor=floor, delta=0.1,
                       horizon=HORIZON)
        assert record["log_weights"] == list(state.log_weights)
        rows = {row["id"]: row for row in read_jsonl(out / "rounds" / str(k) / "scores.jsonl")}
        assert len(rows) == unlabeled
        assert {i for i, row in rows.items() if row["selected"]} == set(entry["selected_ids"])
        assert all(rows[p.id]["arm"] == p.arm and rows[p.id]["score"] == p.probability
                   for p in picks)
        assert not (out / "rounds" / str(k) / "scoring").exists()  # every arm's parts cleared
    assert "1" in results["lambda"]  # me-star is an arm: λ is recorded


def test_auto_with_fewer_picks_than_its_floor_allows_draws_its_arms_equally(tiny_overrides,
                                                                           tmp_path):
    """T = 4 picks for 4 arms: libact's √(ln 4 / (4·4)) = 0.294 is above 1/4, which a floor
    cannot be; the floor is 1/4, and the arms share every draw equally."""
    out = tmp_path / "auto"
    assert main(run_argv(out, "auto", [*tiny_overrides, "loop.step=4", "loop.budget=12"])) == 0
    assert default_floor(4, 4) == pytest.approx(0.294, abs=1e-3)
    assert results_of(out)["rounds"][1]["bandit"]["probabilities"] == [0.25] * 4


def pool_of(out: Path):
    config = load_config(out / "config.yaml")
    return subsample(load_task(config.task).train, POOL, numpy_rng(0, 0, "pool"))


def base_hidden(out: Path) -> np.ndarray:
    """The base model's hidden states over the pool that the run clustered, [pool, hidden],
    each scaled to length 1 as the run scaled them."""
    hidden = read_arrays(RunFolder(out).base_hidden_parts().path(0))["hidden"]
    assert hidden.shape == (POOL, 32)  # one part: the tiny model's hidden size
    return unit_rows(hidden)


def typiclust_picks(hidden: np.ndarray, labeled: np.ndarray, k: int,
                    min_size: int) -> tuple[np.ndarray, Clusters]:
    """Round k's typiclust picks and clusters, drawn as the run draws them."""
    count = WARM_START if k == 0 else STEP
    cluster_rng = numpy_rng(0, k, "warm_start" if k == 0 else "typiclust")
    clusters = cluster_pool(hidden, labeled, count, rng=cluster_rng, min_size=min_size)
    assert clusters.count == labeled.sum() + count
    pick_rng = cluster_rng if k == 0 else numpy_rng(0, k, "batch_rule")
    return typiclust(clusters, labeled, count, rng=pick_rng), clusters


def test_typiclust_warm_start_and_rounds_take_typiclusts_picks(tiny_overrides, tmp_path,
                                                                monkeypatch):
    """Each round's picks are `typiclust`'s on the run's unit-length base states, with the
    run's generators and `selection.min_cluster_size` (3 here, not the default); its scores are
    `typical_scores`. On this pool of 60 in 8 to 24 clusters some clusters are small, so the
    minimum size changes picks.
    (The tiny model's final norm leaves its states of nearly one length, so scaling them moves
    no pick here: a spy checks that the run scales what it clusters.)"""
    scaled = []
    monkeypatch.setattr(loop_module, "unit_rows", lambda states: scaled.append(states) or
                        unit_rows(states))
    out = tmp_path / "typiclust"
    assert main(run_argv(out, "typiclust", [*tiny_overrides, "loop.warm_start_strategy=typiclust",
                                            "selection.min_cluster_size=3"])) == 0
    assert len(scaled) == 1  # once a run, when the states are computed
    rounds = results_of(out)["rounds"]
    assert [r["n_labeled"] for r in rounds] == [8, 16, 24]
    pool, hidden = pool_of(out), base_hidden(out)
    assert np.array_equal(unit_rows(scaled[0]), hidden)
    labeled = np.zeros(POOL, dtype=bool)
    differs = False
    for k, entry in enumerate(rounds):
        picked = positions_of(pool, entry["selected_ids"])
        expected, clusters = typiclust_picks(hidden, labeled, k, 3)
        assert sorted(picked.tolist()) == sorted(expected.tolist())
        differs |= set(typiclust_picks(hidden, labeled, k, 0)[0].tolist()) != set(expected.tolist())
        if k > 0:
            rows = read_jsonl(out / "rounds" / str(k) / "scores.jsonl")
            free = positions_of(pool, [row["id"] for row in rows])
            assert [row["score"] for row in rows] == typical_scores(clusters, labeled)[free].tolist()
        labeled[picked] = True
    assert differs


def test_typiclust_me_star_mixes_typicality_by_lambda(tiny_overrides, tmp_path):
    """Round 1 mixes μ_f with the typicality of the base model's clusters in μ_b's place, at
    λ = 1 − 0.1·(t+1): 0.9, then 0.8; its scores are 0.9·minmax(typicality) + 0.1·minmax(μ_f)."""
    out = tmp_path / "typiclust-me-star"
    # 16 clusters of a 60-example pool hold under 6 each: with the default minimum all would be
    # outliers, scoring 0, and typicality would not show in the mix
    settings = [*tiny_overrides, "selection.min_cluster_size=0"]
    assert main(run_argv(out, "typiclust-me-star", settings)) == 0
    results = results_of(out)
    assert results["lambda"] == {"1": pytest.approx(0.9), "2": pytest.approx(0.8)}
    pool, hidden = pool_of(out), base_hidden(out)
    labeled = np.zeros(POOL, dtype=bool)
    labeled[positions_of(pool, results["rounds"][0]["selected_ids"])] = True
    clusters = cluster_pool(hidden, labeled, STEP, rng=numpy_rng(0, 1, "typiclust"), min_size=0)
    rows = read_jsonl(out / "rounds" / "1" / "scores.jsonl")
    free = positions_of(pool, [row["id"] for row in rows])
    # the clusters of labeled examples score 0 and each uncovered one's best 1: min-max over the
    # unlabeled pool leaves them as they are
    assert [row["base"] for row in rows] == pytest.approx(
        typical_scores(clusters, labeled)[free].tolist(), abs=1e-12)
    base, full = (np.array([row[key] for row in rows]) for key in ("base", "full"))
    assert np.ptp(base) > 0  # typicality speaks
    spread = [(v - v.min()) / (v.max() - v.min()) for v in (base, full)]
    np.testing.assert_allclose([row["score"] for row in rows],
                               0.9 * spread[0] + 0.1 * spread[1], rtol=0, atol=1e-9)


@pytest.mark.parametrize(("strategy", "settings"), [
    ("auto", []),
    ("typiclust", ["loop.warm_start_strategy=typiclust"]),
])
def test_a_run_killed_after_a_round_replays_exactly(tiny_overrides, tmp_path, monkeypatch,
                                                    strategy, settings):
    """As `test_replay`'s: a `star run` process killed once results.json lists round 0, rerun
    here after the reference; every file equals the uninterrupted run's."""
    overrides = [*tiny_overrides, *settings, "loop.budget=32"]  # four rounds: the kill lands mid-run
    reference, out, log = tmp_path / "reference", tmp_path / "killed", tmp_path / "log.txt"
    assert main(run_argv(reference, strategy, overrides)) == 0
    cache = tmp_path / "cache-replay"
    process = launch(run_argv(out, strategy, overrides), cache, log)
    wait_for(lambda: rounds_done(out) > 0, process)
    assert process.poll() is None, f"the run ended before the kill:\n{log.read_text()[-3000:]}"
    process.kill()
    process.wait()
    assert 0 < rounds_done(out) < 4
    monkeypatch.setenv("STAR_CACHE_DIR", str(cache))
    assert main(run_argv(out, strategy, overrides)) == 0
    assert differing(run_files(reference), run_files(out)) == []


@pytest.mark.parametrize("written", [False, True])
def test_auto_stopped_around_writing_a_batch_replays_exactly(tiny_overrides, tmp_path,
                                                             monkeypatch, written):
    """A stop once round 1's draw is in results.json, before its batch is written (the rerun
    draws the same batch again) or after (the rerun reads the batch, and the draw to reward)."""
    reference, out = tmp_path / "reference", tmp_path / "stopped"
    assert main(run_argv(reference, "auto", tiny_overrides)) == 0
    write_batch = RunFolder.write_batch

    def stop_at_round_1(folder, batch):
        if batch.round != 1 or written:
            write_batch(folder, batch)
        if batch.round == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # undoing only this: the cache stays the test's own
        patch.setattr(RunFolder, "write_batch", stop_at_round_1)
        assert main(run_argv(out, "auto", tiny_overrides)) == 130
    assert rounds_done(out) == 1 and results_of(out)["bandit_draw"]["round"] == 1
    assert (out / "rounds" / "1" / "batch.json").exists() == written
    assert main(run_argv(out, "auto", tiny_overrides)) == 0
    assert differing(run_files(reference), run_files(out)) == []


def test_auto_with_people_refuses_an_arm_that_reads_gold(tiny_overrides, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_argv(out, "auto", [*tiny_overrides, "loop.annotator=people",
                                       "bandit.arms=[random, pe]"])) == 2
    err = capsys.readouterr().err
    assert ("strategy 'auto' (its arm 'pe') scores the gold answers of unlabeled examples (its "
            "measure is PE)") in err
    assert err.count("\n") == 1 and "Traceback" not in err
