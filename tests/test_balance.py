"""Class-balanced training (`train.balance: classes`): the weights and the weighted loss."""

from __future__ import annotations

import pytest
import torch

from star.data.batching import encode
from star.model.training import answer_loss, class_weights, train_adapter


def test_each_class_weighs_alike_and_the_weights_average_one():
    weights = class_weights(["no", "no", "no", "yes"])  # n / (classes · n_class)
    assert weights == [4 / 6, 4 / 6, 4 / 6, 2.0]
    assert sum(weights) / len(weights) == pytest.approx(1.0)
    assert class_weights(["a", "b", "c"]) == [1.0, 1.0, 1.0]
    assert class_weights(["a", "a"]) == [1.0, 1.0]  # one class present: nothing to balance


def test_the_weighted_loss_scales_each_items_tokens(lora_setup):
    """Σ_items w_i · (item i's summed token loss) / all response tokens, item by item."""
    _, task, loaded = lora_setup
    items = [encode(loaded.tokenizer, e.prompt, e.response, max_length=64, add_eos=False)
             for e in task.train[:4]]
    weights = [0.5, 2.0, 1.0, 0.25]
    tokens = sum(len(item.response) for item in items)
    with torch.no_grad():
        alone = [float(answer_loss(loaded, [item])) * len(item.response) for item in items]
        weighted = float(answer_loss(loaded, items, weights=weights))
        plain = float(answer_loss(loaded, items))
        ones = float(answer_loss(loaded, items, weights=[1.0] * 4))
    assert weighted == pytest.approx(sum(w * a for w, a in zip(weights, alone, strict=True))
                                     / tokens, rel=1e-5)
    assert plain == pytest.approx(sum(alone) / tokens, rel=1e-5)
    assert ones == pytest.approx(plain, rel=1e-6)


def test_balance_changes_training_only_when_the_labels_are_lopsided(lora_setup):
    config, task, loaded = lora_setup
    from star.model.lora import adapter_state, load_adapter_state

    start = adapter_state(loaded.model)
    yes = [e for e in task.train if e.gold == "yes"]
    no = [e for e in task.train if e.gold == "no"]

    def trained(balance: str, examples) -> dict:
        load_adapter_state(loaded.model, start)
        train = config.train.model_copy(update={"balance": balance})
        train_adapter(loaded, task, examples, config=train, weight_decay_b=0.0, seed=0,
                      round_index=1, max_length=64)
        return adapter_state(loaded.model)

    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)  # noqa: E731
    even = yes[:4] + no[:4]
    assert same(trained("none", even), trained("classes", even))  # weights all 1
    lopsided = yes[:6] + no[:2]
    assert not same(trained("none", lopsided), trained("classes", lopsided))


def test_each_item_trains_with_its_own_class_weight(lora_setup, monkeypatch):
    """6 'yes' and 2 'no': every 'yes' weighs 8 / (2 · 6) = 2/3 and every 'no' 8 / (2 · 2) = 2
    in every batch the loss sees, whatever order the batches take them in."""
    from star.model import training

    config, task, loaded = lora_setup
    examples = [e for e in task.train if e.gold == "yes"][:6] + \
        [e for e in task.train if e.gold == "no"][:2]
    gold = {tuple(encode(loaded.tokenizer, e.prompt, e.response, max_length=64,
                         add_eos=False).inputs): e.gold for e in examples}
    assert len(gold) == 8
    seen: list[tuple[str, float]] = []

    def spy(loaded, items, *, tokens=None, weights=None):
        seen.extend((gold[tuple(item.inputs)], weight)
                    for item, weight in zip(items, weights, strict=True))
        return answer_loss(loaded, items, tokens=tokens, weights=weights)

    monkeypatch.setattr(training, "answer_loss", spy)
    train = config.train.model_copy(update={"balance": "classes", "batch_size": 3})
    train_adapter(loaded, task, examples, config=train, weight_decay_b=0.0, seed=0,
                  round_index=1, max_length=64)
    assert len(seen) == 8 * train.epochs
    for label, weight in seen:
        assert weight == pytest.approx({"yes": 2 / 3, "no": 2.0}[label], abs=1e-12)


def test_a_run_with_lopsided_labels_and_the_unweighted_loss_says_so_once(
        tiny_model_dir, tmp_path, capsys):
    """A pool of 44 'yes' and 4 'no': the warm start of 8 and the next batch hold at most one
    'no' of 8 and 16 (under half an even split), so the run notes it, once; the weighted loss
    does not need the note."""
    from star.tools.cli import main
    from tests.conftest import tiny_settings, write_jsonl

    data = tmp_path / "data"
    data.mkdir()
    records = [{"question": f"cat {i} dog", "answer": "yes" if i % 12 else "no"}
               for i in range(48)]
    write_jsonl(data / "train.jsonl", records)
    write_jsonl(data / "test.jsonl", records[:8])
    settings = [*tiny_settings(tiny_model_dir, data), "loop.budget=16", "loop.pool_size=48",
                "loop.test_size=8"]
    for balance, notes in (("none", 1), ("classes", 0)):
        argv = ["run", "--strategy", "random", "--seed", "0", "--out", str(tmp_path / balance)]
        for setting in [*settings, f"train.balance={balance}"]:
            argv += ["--set", setting]
        assert main(argv) == 0
        assert capsys.readouterr().err.count("the rarest class; the unweighted loss") == notes


def test_the_note_is_for_choice_tasks_and_the_main_process_only(tiny_overrides, number_setup,
                                                               tmp_path, capsys):
    """A generative task has no classes to weigh (its labels are None: the note's count would
    fail), and under several processes only the main one writes the log."""
    from star.active.loop import Experiment
    from star.config import load_config
    from star.processes import Processes

    config, _, _ = number_setup  # a pool of 12
    small = config.model_copy(update={"loop": config.loop.model_copy(
        update={"warm_start": 4, "step": 4, "budget": 12})})
    Experiment(small, tmp_path / "number").advise_balance({"a": "3", "b": "3", "c": "4"})
    lopsided = {str(i): "yes" for i in range(7)} | {"7": "no"}
    for rank, notes in ((1, 0), (0, 1)):
        choice = Experiment(load_config(None, tiny_overrides), tmp_path / f"rank{rank}")
        choice.processes = Processes(rank=rank, world=2)
        choice.advise_balance(lopsided)
        assert capsys.readouterr().err.count("the rarest class; the unweighted loss") == notes
