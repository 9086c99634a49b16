"""The measures and batch rules beyond the paper on the tiny model: BALD from real MC passes,
the hidden states the diversity rules read, and whole runs of each new kind of strategy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from star.active.diversity import stochastic_top_k
from star.active.scorer import PoolScores, Scoring, score_pool
from star.active.strategies import get_strategy
from star.config import LoraConfig, load_config
from star.data.batching import encode
from star.data.sources import load_task
from star.model.loading import load_model
from star.model.lora import attach_lora, backbone_and_head
from star.model.passes import generate
from star.seeding import numpy_rng
from star.tools.cli import main
from tests.conftest import MC_MASKS
from tests.test_loop import read_jsonl, sets


def _randomise_b(loaded) -> None:
    """A trained adapter's stand-in: B ≠ 0, so LoRA dropout changes the outputs."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in loaded.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)


@pytest.fixture
def choice_setup(tiny_overrides):
    config = load_config(None, tiny_overrides)
    loaded = load_model(config.model)
    attach_lora(loaded, LoraConfig(r=4, alpha=8, dropout=0.3), seed=0)
    return load_task(config.task), loaded


def _bald(loaded, task, examples) -> PoolScores:
    return score_pool(loaded, task, examples, Scoring("bald", passes=3, batch_size=8,
                                                      max_length=64), masks=MC_MASKS())


def test_bald_is_zero_while_lora_is_zero_and_positive_once_it_is_not(choice_setup):
    task, loaded = choice_setup
    examples = task.train[:6]
    fresh = _bald(loaded, task, examples)  # B = 0: dropout on LoRA's input changes nothing
    assert fresh.passes.shape == (1, 6)
    assert np.allclose(fresh.passes, 0.0, atol=1e-7)
    _randomise_b(loaded)
    tuned = _bald(loaded, task, examples)
    assert (tuned.passes > 1e-6).all() and (tuned.passes <= np.log(2) + 1e-9).all()


def test_the_hidden_state_is_the_answer_positions_from_the_scoring_pass(choice_setup):
    task, loaded = choice_setup
    examples = task.train[:5]
    out = score_pool(loaded, task, examples, Scoring("margin", batch_size=4, max_length=64),
                     features=True)
    assert out.hidden.shape == (5, 32) and out.probs.shape == (5, 2)
    assert np.allclose(out.probs.sum(axis=1), 1.0)
    backbone, _ = backbone_and_head(loaded.model)
    for i, example in enumerate(examples):
        ids = encode(loaded.tokenizer, example.prompt, "", max_length=64, add_eos=False).prompt
        with torch.no_grad():
            state = backbone(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        # a padded batch against one unpadded row: other matmul shapes, other summation order
        # (fp32, 2 layers of width 32: a few ulps of values of order 1)
        np.testing.assert_allclose(out.hidden[i], state.numpy(), rtol=1e-5, atol=1e-5)


FP32_BALD_NOISE = 2e-5
"""How far an fp32 BALD of agreeing passes may stray from 0 (see its use): 40 ulps of a 6-nat
entropy, an order of magnitude above what AVX2 and AVX-512 kernels were seen to leave, and far
below a real disagreement (the tuned passes' tokens score 1e-3 and more)."""


@pytest.fixture
def lora_number_setup(number_setup):
    _config, task, loaded = number_setup
    attach_lora(loaded, LoraConfig(r=4, alpha=8, dropout=0.3), seed=0)
    return task, loaded


def test_generative_bald_sums_token_disagreement_over_the_own_response(lora_number_setup,
                                                                         monkeypatch):
    """Each example's BALD is the sum, over the tokens of its own greedy response, of the
    per-token mutual information of the MC passes, H[mean_k p_k] − mean_k H[p_k]."""
    import star.model.passes as passes

    task, loaded = lora_number_setup
    examples = task.train[:4]
    # B = 0: the passes agree, and BALD is what fp32 rounding leaves of H[mean p] − mean H[p]
    # over a 400-word vocabulary (entropies of ~6 nats, ulp 4.8e-7), summed over the response
    # in a kernel-dependent order: 1.4e-6 seen on AVX-512; FP32_BALD_NOISE is ~40 ulps of it.
    assert np.allclose(_bald(loaded, task, examples).passes, 0.0, atol=FP32_BALD_NOISE)
    _randomise_b(loaded)
    own = generate(loaded, task, examples, batch_size=8, max_length=64).tokens
    batches, tokens = [], []
    sorted_batches, mutual_information = passes.sorted_batches, passes.mutual_information

    def recording_batches(lengths, size):
        out = sorted_batches(lengths, size)
        if size == 1:  # the scoring passes' batches (generation batches by 3)
            batches.extend(out)
        return out

    def recording_information(probs):
        value = mutual_information(probs)
        tokens.append((probs.double().numpy(), value.double().numpy()))
        return value

    monkeypatch.setattr(passes, "sorted_batches", recording_batches)
    monkeypatch.setattr(passes, "mutual_information", recording_information)
    tuned = score_pool(loaded, task, examples, Scoring("bald", passes=3, batch_size=3,
                                                       max_length=64), masks=MC_MASKS()).passes
    assert tuned.shape == (1, 4)
    assert len(batches) == len(tokens) == 4  # one example a batch, its tokens in one chunk

    def entropy(p):
        return -(p * np.log(np.maximum(p, 1e-6))).sum(-1)

    for [i], (probs, values) in zip(batches, tokens, strict=True):
        assert probs.shape[:2] == (3, len(own[i])) and len(own[i]) > 1  # the own response
        # fp32 entropies of ~6 nats against a float64 reference: a few ulps (4.8e-7) each
        assert values == pytest.approx(entropy(probs.mean(0)) - entropy(probs).mean(0),
                                       abs=FP32_BALD_NOISE)
        assert (values > 1e-6).sum() > 1  # a sum, not one token's value
        assert tuned[0, i] == pytest.approx(values.sum(), abs=1e-6)


def test_generation_keeps_the_prompts_last_hidden_state(lora_number_setup):
    task, loaded = lora_number_setup
    examples = task.train[:3]  # prompts of different lengths share a left-padded batch
    hidden = generate(loaded, task, examples, batch_size=8, max_length=64, features=True).hidden
    backbone, _ = backbone_and_head(loaded.model)
    for i, example in enumerate(examples):
        ids = encode(loaded.tokenizer, example.prompt, "", max_length=58, add_eos=False).prompt
        with torch.no_grad():
            state = backbone(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
        assert np.allclose(hidden[i], state.numpy(), atol=1e-4)
    assert generate(loaded, task, examples, batch_size=8, max_length=64).hidden is None


@pytest.mark.parametrize("strategy", ["margin", "bald-star", "me+kcenter", "lc+badge",
                                      "margin+power"])
def test_each_kind_of_strategy_runs_and_picks_by_its_rule(strategy, tiny_overrides, tmp_path,
                                                         monkeypatch):
    from star.active import strategies

    chosen_by_rule: list[np.ndarray] = []  # each round's picks by k-center or BADGE, into the
    # shortlist of the 16 highest scores

    def spying_on(rule):
        def spy(*args, **kwargs):
            chosen_by_rule.append(rule(*args, **kwargs))
            return chosen_by_rule[-1]
        return spy

    for name in ("kcenter_greedy", "badge"):
        monkeypatch.setattr(strategies, name, spying_on(getattr(strategies, name)))
    out = tmp_path / "run"
    assert main(["run", "--strategy", strategy, "--out", str(out),
                 *sets([*tiny_overrides, "selection.candidates=2"])]) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["n_labeled"] for r in results["rounds"]] == [8, 16, 24]
    for k in (1, 2):
        scores = read_jsonl(out / "rounds" / str(k) / "scores.jsonl")
        chosen = {s["id"] for s in scores if s["selected"]}
        assert chosen == set(results["rounds"][k]["selected_ids"]) and len(chosen) == 8
        assert results["rounds"][k]["pool_uncertainty"] == pytest.approx(
            np.mean([s["full"] for s in scores]))  # the overall uncertainty of the pool
        ranked = [s["id"] for s in sorted(scores, key=lambda s: -s["score"])]
        if strategy == "bald-star":  # μ_b is the base model's predictive entropy: BALD over
            # its one pass (no dropout) would be 0 for every example
            assert min(s["base"] for s in scores) > 0
        if strategy.endswith(("+kcenter", "+badge")):
            assert chosen <= set(ranked[:16])  # among the candidates · step most uncertain
            assert chosen != set(ranked[:8])  # diversity changed the batch
            assert chosen == {ranked[i] for i in chosen_by_rule[k - 1]}  # the rule's picks
        if strategy.endswith("+kcenter"):
            assert ranked[0] in chosen  # the greedy starts from the most uncertain
        if get_strategy(strategy).rule == "top":
            assert chosen == set(ranked[:8])
        if strategy.endswith("+power"):  # 8 drawn ∝ score^β (β = 1) by the round's generator
            drawn = stochastic_top_k(np.array([s["score"] for s in scores]), 8,
                                     rng=numpy_rng(0, k, "batch_rule"), mode="power", beta=1.0)
            assert chosen == {scores[i]["id"] for i in drawn}
            assert chosen != set(ranked[:8])  # not the top 8
    again = tmp_path / "again"
    assert main(["run", "--strategy", strategy, "--out", str(again),
                 *sets([*tiny_overrides, "selection.candidates=2"])]) == 0
    assert json.loads((again / "results.json").read_text())["rounds"][2]["selected_ids"] == \
        results["rounds"][2]["selected_ids"]


def test_every_run_records_the_zero_label_point_once_per_setup(tiny_overrides, tmp_path,
                                                                monkeypatch, capsys):
    from star.active import scorer
    from star.model.passes import predict

    first = tmp_path / "runs" / "random"
    assert main(["run", "--strategy", "random", "--out", str(first), *sets(tiny_overrides)]) == 0
    results = json.loads((first / "results.json").read_text())
    assert [r["pool_uncertainty"] for r in results["rounds"]] == [None] * 3  # random: no measure
    test_rows = read_jsonl(first / "rounds" / "0" / "predictions.jsonl")
    golds = [row["gold"] for row in test_rows]
    config = load_config(None, tiny_overrides)
    task, plain = load_task(config.task), load_model(config.model)  # no adapter: the base model
    by_id = {e.id: e for e in task.test}
    base = predict(plain, task, [by_id[row["id"]] for row in test_rows], batch_size=16,
                   max_length=64)
    assert results["baselines"] == {
        "chance": 0.5, "majority": max(golds.count("yes"), golds.count("no")) / len(golds),
        "zero_shot": pytest.approx(np.mean([p.correct for p in base]))}

    calls = []
    monkeypatch.setattr(scorer, "predict", lambda *a, **k: calls.append(a) or predict(*a, **k))
    second = tmp_path / "runs" / "me"
    assert main(["run", "--strategy", "me", "--out", str(second), *sets(tiny_overrides)]) == 0
    assert calls == []  # the same setup and seed: the zero-shot point came from the cache
    assert json.loads((second / "results.json").read_text())["baselines"] == results["baselines"]
    capsys.readouterr()
    assert main(["status", str(second)]) == 0
    status = capsys.readouterr().out
    assert "before training: chance 50.00 %" in status and "zero-shot" in status
    assert "no forecast from 3 points (it needs 4)" in status and "stopping not yet advised" in status
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Stopping advice and forecast" in report and "| zero-shot |" in report
