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
from star.tools.plan import Cost, Hardware, Lengths, inference_cost, plan


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
    assert rows[1]["train"] == 16 * 2 * (11 * (4 * 1000 + 6 * 100) + 1 * 4 * 50)
    assert rows[0]["evaluate"] == Cost(2 * 16 * (2 * 1100 * 13 + 2 * 50))  # + zero-shot
    hardware = Hardware(devices=2, peak=1e6, mfu=0.5, train_mfu=0.25, generation_mfu=0.1)
    assert hardware.seconds(4e6) == pytest.approx(4.0)
    assert hardware.seconds(4e6, "training") == pytest.approx(8.0)
    assert Cost(1e6, 1e6).seconds(hardware) == pytest.approx(1.0 + 5.0)


def test_generation_is_prefill_plus_decoding(number_setup):
    _, task, _ = number_setup
    counts = ParameterCounts(base=1000, lora=0, head=50)
    lengths = Lengths(prompt=10.0, response=3.0, test_prompt=10.0, label_tokens=[])
    cost = inference_cost(counts, task, 4, prompt=10.0, lengths=lengths, passes=3)
    decode = 2 * 1000 * 4 * 3 + 2 * 50 * 4 * 3
    teacher_forced = 3 * (2 * 1000 * 4 * 13 + 2 * 50 * 4 * 3)
    assert cost == Cost(2 * 1000 * 4 * 10 + teacher_forced, decode)


def test_star_plan_prints_rounds_and_totals(tiny_overrides, capsys):
    sets = [part for item in tiny_overrides for part in ("--set", item)]
    assert main(["plan", "--strategy", "me", "--gpus", "2", "--gpu-flops", "1e9", *sets]) == 0
    out = capsys.readouterr().out
    assert "| 2 | 24 |" in out and "device-hours" in out and "2 × 0.001 TFLOP/s" in out
    with pytest.raises(SystemExit):
        main(["plan", "--gpus", "0", *sets])


@pytest.mark.parametrize(("args", "message"), [
    (["plan", "--gpus", "0"], "argument --gpus: must be at least 1, got 0"),
    (["plan", "--mfu", "2"], "argument --mfu: must be at most 1, got 2"),
    (["plan", "--gpu-flops", "0"], "argument --gpu-flops: must be above 0, got 0"),
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
