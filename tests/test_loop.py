"""The loop and the CLI end to end on the tiny model: selection rules, files, resume, errors."""

import json

import numpy as np
import pytest
import torch
import yaml

from star.tools.cli import main


def star(args: list[str]) -> int:
    """The `star` command with these words, as the shell would call it; its exit code."""
    return main(args)


def sets(overrides: list[str]) -> list[str]:
    return [part for item in overrides for part in ("--set", item)]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_the_run_folder_and_obeys_the_budget(tiny_overrides, toy_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert star(["run", "--strategy", "me-star", "--seed", "0", "--out", str(out),
                *sets([*tiny_overrides, "loop.budget=22"])]) == 0
    results = json.loads((out / "results.json").read_text())
    rounds = results["rounds"]
    assert [r["n_labeled"] for r in rounds] == [8, 16, 22]  # the last step is cut to the budget
    assert [len(r["selected_ids"]) for r in rounds] == [8, 8, 6]
    all_ids = [i for r in rounds for i in r["selected_ids"]]
    assert len(all_ids) == len(set(all_ids))
    assert results["strategy"] == "me-star" and results["task"] == toy_data_dir.name
    a0, a1, a2 = (r["accuracy"] for r in rounds)
    # the trapezoid over the labels 8 -> 16 -> 22, divided by its span 14 (the uneven last step
    # counts 6, not 8; the zero-shot point before any label is not part of the AUC)
    assert results["auc"] == pytest.approx((8 * (a0 + a1) / 2 + 6 * (a1 + a2) / 2) / 14)
    for k in range(3):
        folder = out / "rounds" / str(k)
        assert (folder / "adapter" / "adapter_model.safetensors").exists()
        predictions = read_jsonl(folder / "predictions.jsonl")
        assert len(predictions) == 16
        assert set(predictions[0]) == {"id", "prediction", "gold", "correct", "confidence"}
        assert rounds[k]["accuracy"] == pytest.approx(np.mean([p["correct"] for p in predictions]))
    scores = read_jsonl(out / "rounds" / "1" / "scores.jsonl")
    assert len(scores) == 60 - 8
    assert set(scores[0]) == {"id", "base", "passes", "full", "score", "selected"}
    assert len(scores[0]["passes"]) == 3
    assert scores[0]["full"] == pytest.approx(np.mean(scores[0]["passes"]))
    chosen = {s["id"] for s in scores if s["selected"]}
    assert chosen == set(rounds[1]["selected_ids"])
    top = sorted(scores, key=lambda s: -s["score"])[:8]
    assert {s["id"] for s in top} == chosen
    labeled_before = set(rounds[0]["selected_ids"])
    assert not labeled_before & {s["id"] for s in scores}
    config = (out / "config.yaml").read_text()
    assert "strategy: me-star" in config and "budget: 22" in config
    assert "AUC" in capsys.readouterr().out


def test_same_seed_same_selections_and_resume(tiny_overrides, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    args = ("--strategy", "me", "--seed", "3", *sets(tiny_overrides))
    assert star(["run", "--out", str(first), *args]) == 0
    # Stop the second run after round 1 by cutting its results, then resume it.
    assert star(["run", "--out", str(second), *args]) == 0
    results = json.loads((second / "results.json").read_text())
    results["rounds"] = results["rounds"][:2]
    (second / "results.json").write_text(json.dumps(results))
    assert star(["run", "--out", str(second), *args]) == 0
    a = json.loads((first / "results.json").read_text())
    b = json.loads((second / "results.json").read_text())
    assert [r["selected_ids"] for r in a["rounds"]] == [r["selected_ids"] for r in b["rounds"]]
    assert [r["accuracy"] for r in a["rounds"]] == pytest.approx([r["accuracy"] for r in b["rounds"]])


def test_resume_refuses_another_config(tiny_overrides, tmp_path, capsys):
    out = tmp_path / "run"
    assert star(["run", "--out", str(out), "--strategy", "random", *sets(tiny_overrides)]) == 0
    assert star(["run", "--out", str(out), "--strategy", "me", *sets(tiny_overrides)]) == 2
    assert "differs in: strategy" in capsys.readouterr().err
    renamed = sets([*tiny_overrides, "task.title=Renamed"])
    before = yaml.safe_load((out / "config.yaml").read_text())
    assert star(["run", "--out", str(out), "--strategy", "random", *renamed]) == 0  # a name only
    after = yaml.safe_load((out / "config.yaml").read_text())  # which config.yaml now says
    assert after["task"].pop("title") == "Renamed" != before["task"].pop("title")
    assert after == before


def kept_adapters(out) -> dict[str, list[str]]:
    """Round -> the adapter folders its round folder still holds."""
    return {k.name: sorted(p.name for p in k.iterdir() if p.name.endswith("adapter"))
            for k in sorted((out / "rounds").iterdir()) if any(k.glob("*adapter"))}


def test_keep_adapters_last_deletes_earlier_adapters_once_a_round_is_recorded(
        tiny_overrides, tmp_path, monkeypatch):
    """`loop.keep_adapters: last` deletes a round's adapters (the one handed out and the one
    the guard kept to pick with) only once the next round is recorded: a run stopped before
    that resumes from them, one stopped after it deletes them when it goes on, and the numbers
    are those of a run that kept them all."""
    from star.active import prompt_guard
    from star.active.runfolder import RunFolder
    from star.errors import DataError

    monkeypatch.setattr(prompt_guard, "choose", lambda tuned, base: prompt_guard.BASE)
    settings = [*tiny_overrides, "loop.budget=32", "guard.folds=2", "guard.max_labels=16",
                "guard.reach=labels", "guard.min_per_class=0"]  # rounds 0, 1: the base model
    args = ["--strategy", "me", "--seed", "1"]
    kept, pruned = tmp_path / "all", tmp_path / "last"
    assert star(["run", "--out", str(kept), *args, *sets(settings)]) == 0
    assert kept_adapters(kept) == {"0": ["adapter", "trained_adapter"],
                                   "1": ["adapter", "trained_adapter"], "2": ["adapter"],
                                   "3": ["adapter"]}
    last = sets([*settings, "loop.keep_adapters=last"])
    write_results, drop_adapters = RunFolder.write_results, RunFolder.drop_adapters

    def stop_recording_round_2(folder, results):  # round 2's adapter saved, its record not
        if len(results["rounds"]) == 3:
            raise KeyboardInterrupt
        write_results(folder, results)

    def stop_before_dropping(folder, before):  # round 2 recorded, nothing dropped since
        if before == 2:
            raise KeyboardInterrupt
        drop_adapters(folder, before)

    with monkeypatch.context() as stopped:
        stopped.setattr(RunFolder, "write_results", stop_recording_round_2)
        assert star(["run", "--out", str(pruned), *args, *last]) == 130
    assert kept_adapters(pruned) == {"1": ["adapter", "trained_adapter"], "2": ["adapter"]}
    with monkeypatch.context() as stopped:
        stopped.setattr(RunFolder, "drop_adapters", stop_before_dropping)
        assert star(["run", "--out", str(pruned), *args, *last]) == 130
    assert kept_adapters(pruned) == {"1": ["adapter", "trained_adapter"], "2": ["adapter"]}
    assert star(["run", "--out", str(pruned), *args, *last]) == 0
    assert kept_adapters(pruned) == {"3": ["adapter"]}
    a, b = (json.loads((out / "results.json").read_text()) for out in (kept, pruned))
    assert [r["selected_ids"] for r in a["rounds"]] == [r["selected_ids"] for r in b["rounds"]]
    assert [r["accuracy"] for r in a["rounds"]] == pytest.approx([r["accuracy"] for r in b["rounds"]])
    with pytest.raises(DataError, match="keeps only its last round's"):
        RunFolder(pruned).saved_adapter(2)
    # The key changes no number: a finished run goes on under the other value, and drops then.
    assert star(["run", "--out", str(kept), *args, *last]) == 0
    assert kept_adapters(kept) == {"3": ["adapter"]}
    saved = yaml.safe_load((kept / "config.yaml").read_text())  # which config.yaml now says
    assert saved["loop"]["keep_adapters"] == "last"


def test_keep_adapters_last_keeps_the_round_noise_retrains_from(tiny_overrides, tmp_path):
    """Under `train.init: continue` round k starts from round k − 1's adapter, so `last`
    keeps that one too and `star noise` retrains the last round."""
    out = tmp_path / "run"
    assert star(["run", "--strategy", "random", "--seed", "0", "--out", str(out),
                 *sets([*tiny_overrides, "train.init=continue", "loop.keep_adapters=last"])]) == 0
    assert kept_adapters(out) == {"1": ["adapter"], "2": ["adapter"]}
    assert star(["noise", str(out), "--train-seeds", "2"]) == 0


def test_compare_writes_summary_table_and_plot(tiny_overrides, toy_data_dir, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert star(["compare", "none.yaml", "--out", str(out)]) == 2  # missing config: one line
    config = tmp_path / "toy.yaml"  # a custom task is titled by its config file's name
    config.write_text("# test\nloop:\n  budget: 16\n")
    assert star(["compare", str(config), "--strategies", "random,pe-star", "--seeds", "0,1",
                "--out", str(out), *sets([o for o in tiny_overrides if "budget" not in o])]) == 0
    summary = json.loads((out / "summary.json").read_text())["toy"]
    assert set(summary) == {"random", "pe-star"}
    assert summary["pe-star"]["seeds"] == [0, 1]
    assert summary["random"]["ripl_mean"] is None
    assert summary["pe-star"]["ripl_mean"] is not None
    table = (out / "table.md").read_text()
    assert "| pe-star |" in table and "toy AUC" in table
    assert (out / "learning_curves.png").stat().st_size > 1000
    assert "learning_curves.png" in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "message"), [
    (["strategy=entropy+magic"], "unknown strategy 'entropy+magic'; a strategy is random"),
    (["task.name=squad"], "unknown task 'squad'; known tasks"),
    (["loop.foo=1"], "unknown config key 'loop.foo'; allowed here"),
    (["loop.budget=500", "loop.warm_start=8"], "loop.budget (500) is larger than the pool (60"),
    (["loop.warm_start=30", "loop.budget=20"], "loop.warm_start (30) is larger than loop.budget"),
    (["task.data_dir=/nonexistent/folder"], "data folder '/nonexistent/folder' does not exist"),
])
def test_bad_input_is_one_line_and_exit_code_2(tiny_overrides, tmp_path, capsys, extra, message):
    code = star(["run", "--out", str(tmp_path / "r"), *sets([*tiny_overrides, *extra])])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_data_lines_are_reported_through_the_cli(tiny_overrides, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    # an answer may be missing in the pool (people label it), a prompt field may not
    (data / "train.jsonl").write_text('{"question": "a", "answer": "yes"}\n{"answer": "no"}\n')
    (data / "test.jsonl").write_text('{"question": "a", "answer": "maybe"}\n')
    code = star(["run", "--out", str(tmp_path / "r"), *sets([*tiny_overrides,
                                                            f"task.data_dir={data}"])])
    assert code == 2
    assert "train.jsonl:2: missing field 'question'" in capsys.readouterr().err


@pytest.mark.parametrize("init", ["fresh", "continue"])
def test_each_round_starts_from_the_initial_or_the_last_adapter(tiny_overrides, tmp_path,
                                                               monkeypatch, init):
    from star.active import loop
    from star.model.lora import adapter_state

    starts, ends = [], []
    original = loop.train_adapter

    def recording(loaded, *args, **kwargs):
        starts.append(adapter_state(loaded.model))
        stats = original(loaded, *args, **kwargs)
        ends.append(adapter_state(loaded.model))
        return stats

    monkeypatch.setattr(loop, "train_adapter", recording)
    overrides = [o for o in tiny_overrides if "budget" not in o]
    assert star(["run", "--out", str(tmp_path / "r"), "--strategy", "pe", "--set",
                f"train.init={init}", "--set", "loop.budget=16", *sets(overrides)]) == 0
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    assert len(starts) == 2 and not same(starts[0], ends[0])
    assert same(starts[1], starts[0] if init == "fresh" else ends[0])


def test_cached_base_scores_equal_a_fresh_computation(tiny_overrides):
    """μ_b read back from the disk cache (in any order, partly cached) equals scoring the
    examples afresh with the adapter off."""
    from star.active.scorer import Scoring, base_score_cache, base_scores, score_examples
    from star.config import load_config
    from star.data.sources import load_task
    from star.model.loading import load_model
    from star.model.lora import adapter_off, attach_lora

    config = load_config(None, tiny_overrides)
    task = load_task(config.task)
    loaded = load_model(config.model)
    attach_lora(loaded, config.lora, seed=0)
    with torch.no_grad():  # an adapter that changes the model: μ_b must not see it
        for name, param in loaded.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    examples = task.train[:30]
    with adapter_off(loaded.model):
        fresh = score_examples(loaded, task, examples, Scoring("me", batch_size=16, max_length=64))[0]
    scoring = Scoring("me", batch_size=16, max_length=64)
    cache = base_score_cache(loaded, task, scoring)
    first = base_scores(loaded, task, examples[:20], scoring, cache=cache)  # caches 20 examples
    mixed = base_scores(loaded, task, examples[::-1], scoring, cache=cache)  # 20 cached, 10 new
    np.testing.assert_allclose(first, fresh[:20], rtol=0, atol=1e-5)
    np.testing.assert_allclose(mixed, fresh[::-1], rtol=0, atol=1e-5)
    full = score_examples(loaded, task, examples, Scoring("me", batch_size=16, max_length=64))[0]
    assert np.abs(full - fresh).max() > 1e-4  # the adapter matters (10x the tolerance)
