"""`star plan` and the FLOPs model it shares with `star bench`, against hand counts."""

from __future__ import annotations

import json

import pytest

from star.config import LoraConfig, load_config
from star.data.sources import load_task
from star.errors import ConfigError
from star.model.flops import ParameterCounts, counts_of_architecture, counts_of_model
from star.model.loading import load_model
from star.model.lora import attach_lora
from star.tools.cli import main
from star.tools.plan import (
    Cost,
    Hardware,
    Lengths,
    expected_counts,
    guard_cost,
    inference_cost,
    plan,
)


def test_architecture_counts_equal_the_loaded_models(tiny_overrides, tiny_model_dir):
    config = load_config(None, tiny_overrides)
    loaded = load_model(config.model)
    attach_lora(loaded, LoraConfig(r=4, alpha=8), seed=0)
    arch = json.loads((tiny_model_dir / "config.json").read_text())
    targets = LoraConfig().target_modules
    assert counts_of_architecture(arch, rank=4, targets=targets) == counts_of_model(loaded.model)
    # by hand: hidden 32, 4 heads of 8 with 2 kv heads (kv width 16), MLP 64, 2 layers
    per_layer = 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32
    lora = 4 * (2 * (32 + 32) + 2 * (32 + 16) + 3 * (32 + 64))
    assert counts_of_model(loaded.model) == ParameterCounts(2 * per_layer + 32, 2 * lora,
                                                            arch["vocab_size"] * 32)


def test_llama_2_7b_counts():
    from star.tools.plan import KNOWN_ARCHITECTURES

    counts = counts_of_architecture(KNOWN_ARCHITECTURES["meta-llama/Llama-2-7b-hf"], rank=64,
                                    targets=LoraConfig().target_modules)
    assert counts.base + 2 * counts.head == pytest.approx(6.738e9, rel=1e-3)  # the 7B's size
    assert counts.lora == 32 * 64 * (4 * 8192 + 3 * (4096 + 11008))  # 159.9 M


def test_plan_of_a_round_by_hand(tiny_overrides):
    config = load_config(None, [*tiny_overrides, "strategy=me-star", "train.epochs=2"])
    task = load_task(config.task)
    counts = ParameterCounts(base=1000, lora=100, head=50)
    lengths = Lengths(prompt=10.0, response=1.0, test_prompt=12.0, label_tokens=[1, 1])
    rows = plan(config, counts=counts, lengths=lengths, task=task)
    assert [r["labels"] for r in rows] == [8, 16, 24]
    # round 1: 3 MC passes over the 52 unlabeled (11 tokens, 1 head position each), μ_b over
    # the 60-example pool once, and the 8 picks' suggestions
    per_example = 2 * 1100 * 11 + 2 * 50
    assert rows[1]["score"] == Cost((3 * 52 + 60 + 8) * per_example)
    assert rows[2]["score"] == Cost((3 * 44 + 8) * per_example)  # μ_b comes from the cache
    assert rows[1]["train"] == Cost(training=16 * 2 * (11 * (4 * 1000 + 6 * 100) + 1 * 4 * 50))
    assert rows[0]["evaluate"] == Cost(2 * 16 * (2 * 1100 * 13 + 2 * 50))  # + zero-shot
    assert all(r["guard"] == Cost() for r in rows)  # the tiny settings turn the guard off
    hardware = Hardware(devices=2, peak=1e6, mfu=0.5, train_mfu=0.25, generation_mfu=0.1)
    assert hardware.seconds(4e6) == pytest.approx(4.0)
    assert hardware.seconds(4e6, "training") == pytest.approx(8.0)
    assert Cost(1e6, 1e6, 1e6).seconds(hardware) == pytest.approx(1.0 + 5.0 + 2.0)


COUNTS = ParameterCounts(base=1000, lora=100, head=50)
CHOICE = Lengths(prompt=10.0, response=1.0, test_prompt=12.0, label_tokens=[1, 1])
PASS = 2 * 1100 * 11 + 2 * 50
"""One forward pass over a pool example: 10 prompt tokens + the label slot, one head position."""
TRAIN = 11 * (4 * 1000 + 6 * 100) + 1 * 4 * 50
"""One training pass over a pool example, the loss on its one answer token."""


def scoring(tiny_overrides: list[str], *settings: str) -> list[Cost]:
    """Each round's scoring cost of the toy pool (60 examples; labels 8, 16, 24) by hand-sized
    counts."""
    config = load_config(None, [*tiny_overrides, *settings])
    return [r["score"] for r in plan(config, counts=COUNTS, lengths=CHOICE,
                                     task=load_task(config.task))]


def test_the_prompt_guard_trains_k_folds_and_predicts_the_labels_twice(tiny_overrides):
    config = load_config(None, [*tiny_overrides, "guard.folds=4", "guard.max_labels=16",
                                "train.epochs=2", "guard.reach=labels"])
    rows = plan(config, counts=COUNTS, lengths=CHOICE, task=load_task(config.task))
    # 8 labels: 4 adapters on 6 labels each, 2 epochs; the base model on all 8, each fold's 2
    # held out by its adapter
    assert rows[0]["guard"] == Cost(forward=(8 + 8) * PASS, training=4 * 6 * 2 * TRAIN)
    assert rows[1]["guard"] == Cost(forward=(16 + 16) * PASS, training=4 * 12 * 2 * TRAIN)
    assert rows[2]["guard"] == Cost()  # 24 labels > guard.max_labels
    task = load_task(config.task)
    # leave-one-out below k labels: 3 adapters on 2 labels each; none with one label
    assert guard_cost(config, task, counts=COUNTS, lengths=CHOICE, labels=3) == Cost(
        forward=6 * PASS, training=3 * 2 * 2 * TRAIN)
    assert guard_cost(config, task, counts=COUNTS, lengths=CHOICE, labels=1) == Cost()
    every = config.model_copy(update={"guard": config.guard.model_copy(
        update={"max_labels": None})})
    assert guard_cost(every, task, counts=COUNTS, lengths=CHOICE, labels=24) == Cost(
        forward=48 * PASS, training=4 * 18 * 2 * TRAIN)


def test_a_plan_counts_the_guard_s_reach_by_the_rarest_class_as_random_draws_it(tiny_overrides):
    """The toy training file holds 17 `no` in 80: random draws of 8, 16 and 24 labels hold 1, 3
    and 5 of them (rounded down), counted 2, 6 and 10 against `guard.max_labels: 8`."""
    config = load_config(None, [*tiny_overrides, "guard.folds=4", "guard.max_labels=8"])
    checked = [r["guard"] != Cost()
               for r in plan(config, counts=COUNTS, lengths=CHOICE, task=load_task(config.task))]
    assert checked == [True, True, False]
    assert expected_counts(load_task(config.task), 24) == {"yes": 18, "no": 5}  # 18.9, 5.1
    by_labels = load_config(None, [*tiny_overrides, "guard.folds=4", "guard.max_labels=8",
                                   "guard.reach=labels"])
    assert [r["guard"] != Cost() for r in plan(by_labels, counts=COUNTS, lengths=CHOICE,
                                               task=load_task(by_labels.task))] == \
        [True, False, False]


def test_the_fit_check_predicts_the_labels_twice_a_round(tiny_overrides):
    """Under `train.retries` a round's training has the base model's and the adapter's answers
    on its labels beside the training itself; without retries only the training."""
    config = load_config(None, [*tiny_overrides, "train.epochs=2", "train.retries=2"])
    rows = plan(config, counts=COUNTS, lengths=CHOICE, task=load_task(config.task))
    for r, labels in zip(rows, (8, 16, 24), strict=True):
        assert r["train"] == Cost(forward=2 * labels * PASS, training=labels * 2 * TRAIN)
    once = load_config(None, [*tiny_overrides, "train.epochs=2"])  # the tiny settings: 0
    assert plan(once, counts=COUNTS, lengths=CHOICE, task=load_task(once.task))[1]["train"] \
        == Cost(training=16 * 2 * TRAIN)


def test_a_shortlist_runs_one_pass_over_the_pool_and_k_over_it(tiny_overrides):
    short = scoring(tiny_overrides, "strategy=me-star", "selection.shortlist=2")
    # round 1: one MC pass over the 52 unlabeled, 3 over the 2·8 it ranks highest, μ_b over
    # the 60-example pool, the 8 picks' suggestions; round 2: 44 unlabeled, no μ_b
    assert short[1:] == [Cost((52 + 3 * 16 + 60 + 8) * PASS), Cost((44 + 3 * 16 + 8) * PASS)]
    whole = scoring(tiny_overrides, "strategy=me-star", "selection.shortlist=7")  # 56 ≥ 52
    assert whole[1] == Cost((3 * 52 + 60 + 8) * PASS)
    assert scoring(tiny_overrides, "strategy=me", "selection.shortlist=2")[1] == Cost(
        (52 + 8) * PASS)  # no MC passes to spare


def test_typiclust_reads_the_pools_hidden_states_once(tiny_overrides):
    assert scoring(tiny_overrides, "strategy=typiclust") == [
        Cost(8 * PASS), Cost((60 + 8) * PASS), Cost(8 * PASS)]
    assert scoring(tiny_overrides, "strategy=random", "loop.warm_start_strategy=typiclust") == [
        Cost((60 + 8) * PASS), Cost(8 * PASS), Cost(8 * PASS)]
    # typicality takes μ_b's place in the mix: the hidden states, no μ_b
    assert scoring(tiny_overrides, "strategy=typiclust-me-star")[1] == Cost(
        (3 * 52 + 60 + 8) * PASS)
    assert scoring(tiny_overrides, "strategy=typiclust-me-star",
                   "loop.warm_start_strategy=typiclust")[:2] == [
        Cost((60 + 8) * PASS), Cost((3 * 52 + 8) * PASS)]


def test_auto_scores_with_every_arm_and_predicts_its_labels_for_the_reward(tiny_overrides):
    rounds = scoring(tiny_overrides, "strategy=auto")  # arms random, me-star, margin, typiclust
    assert rounds[0] == Cost(8 * PASS)
    # round 1: me-star 3 × 52 + μ_b 60, margin 52, typiclust's hidden states 60, the reward on
    # the 8 labels the bandit bought (the warm start is not its), the suggestions
    assert rounds[1] == Cost((3 * 52 + 60 + 52 + 60 + 8 + 8) * PASS)
    assert rounds[2] == Cost((3 * 44 + 44 + 16 + 8) * PASS)
    two = scoring(tiny_overrides, "strategy=auto", "bandit.arms=[random, margin]")
    assert two[1:] == [Cost((52 + 8 + 8) * PASS), Cost((44 + 16 + 8) * PASS)]


def test_the_evidence_schedule_predicts_the_labels_before_the_round(tiny_overrides):
    rounds = scoring(tiny_overrides, "strategy=me-star", "uncertainty.schedule=evidence")
    assert rounds[1:] == [Cost((3 * 52 + 60 + 8 + 8) * PASS), Cost((3 * 44 + 16 + 8) * PASS)]
    assert scoring(tiny_overrides, "strategy=me", "uncertainty.schedule=evidence")[2] == Cost(
        (44 + 8) * PASS)  # no mix, no skill to weigh it


def test_generation_is_prefill_plus_decoding(number_setup):
    _, task, _ = number_setup
    counts = ParameterCounts(base=1000, lora=0, head=50)
    lengths = Lengths(prompt=10.0, response=3.0, test_prompt=10.0, label_tokens=[])
    cost = inference_cost(counts, task, 4, prompt=10.0, lengths=lengths, passes=3)
    decode = 2 * 1000 * 4 * 3 + 2 * 50 * 4 * 3
    teacher_forced = 3 * (2 * 1000 * 4 * 13 + 2 * 50 * 4 * 3)
    assert cost == Cost(2 * 1000 * 4 * 10 + teacher_forced, decode)
    # a shortlist's one MC pass: decoding, then one teacher-forced pass with dropout
    one = inference_cost(counts, task, 4, prompt=10.0, lengths=lengths, passes=1, mc=True)
    assert one == Cost(2 * 1000 * 4 * 10 + teacher_forced / 3, decode)


def test_star_plan_prints_rounds_and_totals(tiny_overrides, capsys):
    sets = [part for item in tiny_overrides for part in ("--set", item)]
    assert main(["plan", "--strategy", "me", "--gpus", "2", "--gpu-flops", "1e9", *sets]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 24 |" in out and "device-hours" in out and "2 × 0.001 TFLOP/s" in out
    # a CPU: one device at bench's matmul peak, the guard in a column of its own
    assert main(["plan", "--devices", "1", "--device-flops", "4e11", *sets,
                 "--set", "guard.folds=4"]) == 0
    out = capsys.readouterr().out
    assert "1 × 0.4 TFLOP/s" in out and "| guard |" in out and ", guard " in out
    with pytest.raises(SystemExit):
        main(["plan", "--gpus", "0", *sets])


@pytest.mark.parametrize(("args", "message"), [
    (["plan", "--gpus", "0"], "argument --gpus/--devices: must be at least 1, got 0"),
    (["plan", "--mfu", "2"], "argument --mfu: must be at most 1, got 2"),
    (["plan", "--device-flops", "0"],
     "argument --gpu-flops/--device-flops: must be above 0, got 0"),
    (["probe", "confidence", "--shots", "-1", "--out", "x"], "argument --shots: must be at least 0, got -1"),
    (["probe", "entropy", "run", "--top", "1", "--out", "x"], "argument --top: must be at least 4, got 1"),
    (["label", "run", "--port", "70000"], "argument --port: must be at most 65535, got 70000"),
])
def test_out_of_range_numbers_are_usage_errors_that_name_the_bound(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_list_that_is_not_integers_is_one_line(capsys):
    assert main(["bench", "--pool-sizes", "10000,abc"]) == 2
    assert "--pool-sizes '10000,abc' is not a comma-separated list of integers" in capsys.readouterr().err


def test_a_budget_beyond_the_pool_is_refused_as_the_loop_refuses_it(tiny_overrides):
    """Rounds past the pool's end used to be priced with a negative number of examples."""
    config = load_config(None, [*tiny_overrides, "loop.budget=61"])  # the toy pool holds 60
    lengths = Lengths(prompt=10.0, response=1.0, test_prompt=12.0, label_tokens=[1, 1])
    with pytest.raises(ConfigError, match=r"loop.budget \(61\) is larger than the pool \(60"):
        plan(config, counts=ParameterCounts(1000, 100, 50), lengths=lengths,
             task=load_task(config.task))


def test_an_unreadable_architecture_file_is_one_line(tiny_overrides, tmp_path, capsys):
    broken = tmp_path / "config.json"
    broken.write_text("{not json")
    sets = [part for item in tiny_overrides for part in ("--set", item)]
    for path in (broken, tmp_path / "missing.json"):
        assert main(["plan", *sets, "--architecture", str(path)]) == 2
        error = capsys.readouterr().err.strip()
        assert f"--architecture {path}: not a readable JSON file" in error
        assert len(error.splitlines()) == 1
