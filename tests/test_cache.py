"""The μ_b cache serves a value only when it was computed from the same model files and the
same example text, survives any broken file with one warning, and an unusable cache folder is
refused up front. Also what dynamic strategies and the L2 switch do in a run: λ(t) by round,
and β on `lora_B` only for the strategies that ask for it."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from star.active import scorer
from star.active.scorer import Scoring, base_score_cache, base_scores, score_examples
from star.config import load_config
from star.data.sources import load_task
from star.errors import ConfigError
from star.files import check_cache_folder
from star.model import training
from star.model.loading import load_model
from star.tools.cli import main
from tests.conftest import refuse_writes_below, toy_records, write_jsonl

SCORING = Scoring("me", batch_size=16, max_length=64, part_size=8)


def sets(overrides: list[str]) -> list[str]:
    return [part for item in overrides for part in ("--set", item)]


def run_argv(out, strategy: str, overrides: list[str]) -> list[str]:
    return ["run", "--strategy", strategy, "--seed", "0", "--out", str(out), *sets(overrides)]


def fresh(loaded, task, examples) -> np.ndarray:
    """μ_b computed now, with no cache."""
    return score_examples(loaded, task, examples, SCORING)[0]


def cached(loaded, task, examples) -> np.ndarray:
    return base_scores(loaded, task, examples, SCORING, cache=base_score_cache(loaded, task, SCORING))


@pytest.fixture
def scored_ids(monkeypatch) -> list[str]:
    """Ids of the examples the scorer actually computes (not served from the cache)."""
    seen: list[str] = []
    original = scorer.score_examples

    def recording(loaded, task, examples, *args, **kwargs):
        seen.extend(e.id for e in examples)
        return original(loaded, task, examples, *args, **kwargs)

    monkeypatch.setattr(scorer, "score_examples", recording)
    return seen


# -- keys: model files and example text ---------------------------------------------------------

def save_spread_model(folder, seed: int) -> None:
    """New weights for the tiny Llama in `folder` (its tokenizer kept), spread wide enough that
    scores differ by whole nats between models and texts; the tiny model's own init scores
    every text within 1e-3 of log |V|, too close to tell a stale value from a fresh one."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(folder)
    config.initializer_range = 0.5
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)


@pytest.fixture
def model_folder(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    save_spread_model(folder, seed=0)
    return folder


def test_new_weights_at_the_same_path_are_scored_afresh(model_folder, tiny_overrides):
    """Saving another model into the folder a cache entry came from must not bring back the
    old model's scores: the key holds a fingerprint of the files, not the path."""
    config = load_config(None, [*tiny_overrides, f"model.name={model_folder}"])
    task = load_task(config.task)
    examples = task.train[:12]
    old = cached(load_model(config.model), task, examples)
    save_spread_model(model_folder, seed=1)
    loaded = load_model(config.model)
    new, expected = cached(loaded, task, examples), fresh(loaded, task, examples)
    np.testing.assert_allclose(new, expected, rtol=0, atol=1e-5)
    assert np.abs(new - old).min() > 1e-2


def test_weights_replaced_during_a_run_do_not_key_the_old_scores(model_folder, tiny_overrides,
                                                                 tmp_path):
    """The fingerprint must describe the files the run loaded. Taken only when round 1 first
    needs μ_b, it would describe weights saved into the folder after the load, and file the
    loaded model's scores under the new weights' key for every later run to be served."""
    from star.active.loop import Experiment

    overrides = [*tiny_overrides, f"model.name={model_folder}", "strategy=me+dynamic",
                 "loop.budget=16"]
    config = load_config(None, overrides)
    experiment = Experiment(config, tmp_path / "run")
    save_spread_model(model_folder, seed=1)  # while the run goes on
    experiment.run()
    task, loaded = load_task(config.task), load_model(config.model)
    np.testing.assert_allclose(cached(loaded, task, task.train), fresh(loaded, task, task.train),
                               rtol=0, atol=1e-5)


def test_a_changed_tokenizer_file_changes_the_cache(model_folder, tiny_overrides):
    """The tokenizer's files are in the fingerprint too (same weights, another tokenizer)."""
    folder = model_folder
    config = load_config(None, [*tiny_overrides, f"model.name={folder}"])
    task = load_task(config.task)
    before = base_score_cache(load_model(config.model), task, SCORING).path
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, "model_max_length": 77}))
    after = base_score_cache(load_model(config.model), task, SCORING).path
    assert before != after


def test_an_edited_row_with_the_same_id_is_rescored(model_folder, tiny_overrides, tmp_path,
                                                   scored_ids):
    """Ids are the user's; the text behind an id can change between runs. Only the edited row
    is computed again, and it gets its new score."""
    data = tmp_path / "data"
    data.mkdir()
    records = [{"id": f"q{i}", **r} for i, r in enumerate(toy_records(12, 0))]
    write_jsonl(data / "train.jsonl", records)
    write_jsonl(data / "test.jsonl", toy_records(4, 1))
    config = load_config(None, [*tiny_overrides, f"task.data_dir={data}",
                                f"model.name={model_folder}"])
    loaded = load_model(config.model)
    before = cached(loaded, load_task(config.task), load_task(config.task).train)
    records[3]["question"] = "stone stone stone stone cat"
    write_jsonl(data / "train.jsonl", records)
    task = load_task(config.task)
    scored_ids.clear()
    after = cached(loaded, task, task.train)
    assert scored_ids == ["q3"]
    assert after[3] == pytest.approx(fresh(loaded, task, task.train[3:4])[0], abs=1e-5)
    assert abs(after[3] - before[3]) > 1e-2
    np.testing.assert_array_equal(np.delete(after, 3), np.delete(before, 3))


# -- broken files ------------------------------------------------------------------------------

def spoil(path, how: str) -> set[str]:
    """Break the cache file at `path` one way; returns the entry keys that became bad."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    stored = {key: value for line in lines for key, value in line.items()}
    text = path.read_text()
    if how == "truncated":  # a torn write: the last line cut in half
        cut = text.rstrip("\n").rfind("\n") + 1
        path.write_text(text[: cut + (len(text) - cut) // 2])
        return set(lines[-1])
    elif how == "garbage":
        path.write_bytes(b"\xff\xfe\x00 not json \x9c")
    elif how == "empty":
        path.write_text("")
    elif how == "not a mapping":
        path.write_text(json.dumps(list(stored.values())))
    elif how == "nan":  # json.dumps writes NaN, which json.loads reads back
        bad = set(list(stored)[::3])
        path.write_text(json.dumps({k: math.nan if k in bad else v for k, v in stored.items()})
                        + "\n")
        return bad
    return set(stored)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "not a mapping", "nan"])
def test_a_broken_cache_file_gets_one_warning_and_recomputed_entries(tiny_overrides, capsys,
                                                                    scored_ids, how):
    config = load_config(None, tiny_overrides)
    task, loaded = load_task(config.task), load_model(config.model)
    examples = task.train[:24]
    good = cached(loaded, task, examples)
    path = base_score_cache(loaded, task, SCORING).path
    bad = spoil(path, how)
    capsys.readouterr()
    scored_ids.clear()
    values = cached(loaded, task, examples)
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    if how == "empty":  # no lines: nothing broken to warn about, everything computed again
        assert not warnings and "Traceback" not in err
    else:
        assert len(warnings) == 1 and str(path) in warnings[0] and "Traceback" not in err
    from star.active.cache import entry_key

    assert sorted(scored_ids) == sorted(e.id for e in examples if entry_key(e) in bad)
    np.testing.assert_allclose(values, good, rtol=0, atol=1e-5)
    assert np.isfinite(values).all()
    cached(loaded, task, examples)  # the file was rewritten whole: no warning the next time
    assert "warning" not in capsys.readouterr().err


def test_a_nan_cache_does_not_select_the_first_items(tiny_overrides, tmp_path, capsys):
    """NaN μ_b would make every mixed score NaN, and a stable sort then picks the pool's first
    unlabeled examples. A run over a NaN cache must pick what a run over a clean one picks."""
    overrides = [*tiny_overrides, "loop.budget=16"]
    assert main(run_argv(tmp_path / "clean", "me+dynamic", overrides)) == 0
    # μ_b's file holds the pool (60 entries); the zero-shot point's, the test set (16)
    def entries(file) -> dict:
        return {k: v for line in file.read_text().splitlines() for k, v in json.loads(line).items()}

    path = max((tmp_path / "cache" / "base_scores").glob("*.jsonl"),
               key=lambda file: len(entries(file)))
    path.write_text(json.dumps(dict.fromkeys(entries(path), math.nan)) + "\n")
    capsys.readouterr()
    assert main(run_argv(tmp_path / "nan", "me+dynamic", overrides)) == 0
    clean, nan = ([json.loads(line) for line in (tmp_path / name / "rounds" / "1" / "scores.jsonl")
                   .read_text().splitlines()] for name in ("clean", "nan"))
    picked = [{row["id"] for row in rows if row["selected"]} for rows in (clean, nan)]
    assert picked[0] != {row["id"] for row in clean[:8]}  # the test can tell the failure
    assert picked[1] == picked[0]
    assert clean == nan
    assert f"warning: base-score cache '{path}'" in capsys.readouterr().err


# -- the cache folder --------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_unusable_cache_folder_is_refused_before_round_0(tiny_overrides, tmp_path, capsys,
                                                            monkeypatch, where):
    """Root (these tests' user) can write into any folder, so a file, or a folder under a
    file, is the unusable cache folder here."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("STAR_CACHE_DIR", str(blocker if where == "a file" else blocker / "cache"))
    out = tmp_path / "run"
    assert main(run_argv(out, "me-star", tiny_overrides)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "cache folder" in err and "STAR_CACHE_DIR" in err
    assert not (out / "rounds").exists()


def test_a_read_only_cache_folder_is_refused(tiny_overrides, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "read-only"
    made = folder / "made-before"  # a folder that exists: only writing into it can tell
    made.mkdir(parents=True)
    refuse_writes_below(monkeypatch, folder)
    monkeypatch.setenv("STAR_CACHE_DIR", str(folder))
    out = tmp_path / "run"
    assert main(run_argv(out, "me-star", tiny_overrides)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"star: error: cache folder '{folder}") and err.count("\n") == 1
    assert err.endswith("is not usable (Permission denied); set STAR_CACHE_DIR to a writable "
                        "folder\n")
    assert not (out / "rounds").exists()
    with pytest.raises(ConfigError, match="is not usable"):
        check_cache_folder(made)


# -- λ(t) and β in a run -----------------------------------------------------------------------

def test_lambda_falls_by_the_rate_from_the_first_acquisition_round(tiny_overrides, tmp_path):
    """Linear schedule, rate 0.1: round 1 is t = 0, λ = 1 − 0.1·(t+1) = 0.9; round 2, 0.8.
    The round-1 scores are Eq. 5 by hand: 0.9·minmax(μ_b) + 0.1·minmax(μ_f)."""
    out = tmp_path / "run"
    assert main(run_argv(out, "me+dynamic", tiny_overrides)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["lambda"] == {"1": pytest.approx(0.9), "2": pytest.approx(0.8)}
    rows = [json.loads(line) for line in (out / "rounds/1/scores.jsonl").read_text().splitlines()]
    base, full = (np.array([row[key] for row in rows]) for key in ("base", "full"))

    def minmax(v):
        return (v - v.min()) / (v.max() - v.min())

    np.testing.assert_allclose([row["score"] for row in rows],
                               0.9 * minmax(base) + 0.1 * minmax(full), rtol=0, atol=1e-9)


def test_a_subtract_mix_records_no_lambda(tiny_overrides, tmp_path):
    """μ_f − μ_b weighs nothing by λ(t): a recorded λ would draw a schedule that never acted."""
    out = tmp_path / "run"
    argv = run_argv(out, "me+dynamic", [*tiny_overrides, "uncertainty.mix=subtract"])
    assert main(argv) == 0
    assert "lambda" not in json.loads((out / "results.json").read_text())


@pytest.mark.parametrize(("strategy", "extra", "beta"), [
    ("me", [], 0.0),                                     # no L2 switch
    ("me+dynamic+l2", [], 0.5),                          # the switch: β = train.weight_decay_b
    ("random", ["train.decay_b_always=true"], 0.5),      # the paper code's setting
    ("random", [], 0.0),
])
def test_beta_decays_lora_b_only_where_asked(tiny_overrides, tmp_path, monkeypatch, strategy,
                                             extra, beta):
    """What AdamW gets every round: weight decay β on the `lora_B` group, 0 on everything else."""
    seen = []
    original = training.optimizer_groups

    def recording(model, weight_decay_b):
        groups = original(model, weight_decay_b)
        names = {id(p): name for name, p in model.named_parameters()}
        seen.append(sorted({("lora_B" in names[id(p)], group["weight_decay"])
                            for group in groups for p in group["params"]}))
        return groups

    monkeypatch.setattr(training, "optimizer_groups", recording)
    overrides = [*tiny_overrides, "loop.budget=16", *extra]
    assert main(run_argv(tmp_path / "run", strategy, overrides)) == 0
    assert seen == [[(False, 0.0), (True, beta)]] * 2
