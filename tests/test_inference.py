"""Model passes on the tiny Llama: scores equal hand computations, MC dropout acts only via LoRA."""

import math

import numpy as np
import pytest
import torch

import star.model.training
from star.active.scorer import Scoring, score_examples
from star.config import load_config
from star.data.batching import encode
from star.data.sources import load_task
from star.model.loading import load_model
from star.model.lora import (
    adapter_off,
    adapter_state,
    attach_lora,
    backbone_and_head,
    load_adapter_state,
    mc_dropout,
)
from star.model.passes import predict, response_stats
from star.model.training import optimizer_groups, train_adapter
from tests.conftest import MC_MASKS


@pytest.fixture
def setup(lora_setup):
    config, task, loaded = lora_setup
    with torch.no_grad():  # a trained-looking adapter: B away from its zero init
        for name, param in loaded.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    return config, task, loaded


def full_logits(loaded, ids):
    with torch.no_grad():
        return loaded.model(input_ids=torch.tensor([ids])).logits[0].float()


@pytest.mark.parametrize("head_bias", [False, True])
def test_pe_and_me_equal_hand_computation_on_full_logits(setup, head_bias):
    """The model's own forward is the reference; with a biased LM head (some hub models have
    one) scoring must add the bias as the forward and training do."""
    _config, task, loaded = setup
    if head_bias:
        head = backbone_and_head(loaded.model)[1]
        bias = torch.randn(head.out_features, generator=torch.Generator().manual_seed(0))
        head.bias = torch.nn.Parameter(bias, requires_grad=False)
    example = task.train[0]
    enc = encode(loaded.tokenizer, example.prompt, example.response, max_length=64, add_eos=False)
    logits = full_logits(loaded, enc.ids)
    slot = len(enc.prompt) - 1
    logp = torch.log_softmax(logits, -1)
    nll = -sum(float(logp[slot + j, t]) for j, t in enumerate(enc.response))
    probs = logp.exp()
    entropies = -(probs * logp).sum(-1)
    me_gold = sum(float(entropies[slot + j]) for j in range(len(enc.response)))
    pe = score_examples(loaded, task, [example], Scoring("pe", batch_size=8, max_length=64))
    me = score_examples(loaded, task, [example], Scoring("me", response="gold", batch_size=8, max_length=64))
    assert pe[0, 0] == pytest.approx(nll, abs=1e-4)
    assert me[0, 0] == pytest.approx(me_gold, abs=1e-4)


def test_batched_equals_one_at_a_time(setup):
    _config, task, loaded = setup
    examples = task.train[:12]
    for measure in ("me", "pe"):
        batched = score_examples(loaded, task, examples, Scoring(measure, batch_size=5, max_length=64))
        single = np.concatenate([score_examples(loaded, task, [e],
                                Scoring(measure, batch_size=1, max_length=64))
                                 for e in examples], axis=1)
        assert np.allclose(batched, single, atol=1e-4)


def test_mc_dropout_keeps_base_in_eval_and_only_lora_dropout_on(setup):
    _, _, loaded = setup
    with mc_dropout(loaded.model) as switched:
        training = {name for name, m in loaded.model.named_modules() if m.training}
        assert switched == 2 * 7  # two layers, seven target modules
        assert training and all("lora_dropout" in name for name in training)
    assert not any(m.training for m in loaded.model.modules())


def test_mc_passes_differ_and_only_through_lora(setup, tiny_overrides):
    _config, task, loaded = setup
    examples = task.train[:8]
    passes = score_examples(loaded, task, examples,
                            Scoring("me", passes=3, batch_size=24, max_length=64), masks=MC_MASKS())
    assert passes.shape == (3, 8)
    assert not np.allclose(passes[0], passes[1])
    with adapter_off(loaded.model):  # no LoRA path: dropout has nothing to act on
        base = score_examples(loaded, task, examples,
                              Scoring("me", passes=3, batch_size=24, max_length=64), masks=MC_MASKS())
    assert np.allclose(base[0], base[1]) and np.allclose(base[1], base[2])
    no_dropout = load_config(None, [*tiny_overrides, "lora.dropout=0.0", "strategy=me"])
    plain = load_model(no_dropout.model)
    attach_lora(plain, no_dropout.lora, seed=0)
    plain.model.load_state_dict(loaded.model.state_dict())
    same = score_examples(plain, task, examples,
                          Scoring("me", passes=3, batch_size=24, max_length=64), masks=MC_MASKS())
    assert np.allclose(same[0], same[1], atol=1e-6) and np.allclose(same[0], same[2], atol=1e-6)


def test_multi_token_labels_score_each_label_sequence(tiny_model_dir, toy_data_dir, tiny_overrides):
    config = load_config(None, [*tiny_overrides, "task.verbalizer={yes: cat dog, no: red fish}"])
    task = load_task(config.task)
    loaded = load_model(config.model)
    attach_lora(loaded, config.lora, seed=0)
    example = task.train[0]
    logprob = []
    for choice in task.choices:
        enc = encode(loaded.tokenizer, example.prompt, choice, max_length=64, add_eos=False)
        assert len(enc.response) > 1
        logp = torch.log_softmax(full_logits(loaded, enc.ids), -1)
        logprob.append(sum(float(logp[len(enc.prompt) - 1 + j, t])
                           for j, t in enumerate(enc.response)))
    gold = task.labels.index(example.gold)
    pe = score_examples(loaded, task, [example], Scoring("pe", batch_size=8, max_length=64))
    assert pe[0, 0] == pytest.approx(-logprob[gold], abs=1e-4)
    prediction = predict(loaded, task, [example], batch_size=8, max_length=64)[0]
    assert prediction.prediction == task.labels[int(np.argmax(logprob))]
    probs = np.exp(logprob) / np.exp(logprob).sum()
    assert prediction.confidence == pytest.approx(probs.max(), abs=1e-4)


def test_me_own_on_multi_token_labels_is_the_predicted_labels_summed_entropy(tiny_overrides):
    """ME on the model's own answer (the default) sums the full-vocabulary entropy over the
    tokens of the argmax label's sequence, whatever the gold; ME on the gold response sums it
    over the gold label's. Labels of two tokens each, so the two sequences' entropies differ
    (one-token labels share one slot entropy, and would pass whichever label were read)."""
    config = load_config(None, [*tiny_overrides, "task.verbalizer={yes: cat dog, no: red fish}"])
    task = load_task(config.task)
    loaded = load_model(config.model)
    attach_lora(loaded, config.lora, seed=0)
    examples = task.train[:8]
    entropy = np.zeros((len(examples), 2))
    logprob = np.zeros((len(examples), 2))
    for i, example in enumerate(examples):
        for c, choice in enumerate(task.choices):
            enc = encode(loaded.tokenizer, example.prompt, choice, max_length=64, add_eos=False)
            assert len(enc.response) > 1
            logp = torch.log_softmax(full_logits(loaded, enc.ids), -1)
            per_token = -(logp.exp() * logp).sum(-1)
            slot = len(enc.prompt) - 1
            entropy[i, c] = sum(float(per_token[slot + j]) for j in range(len(enc.response)))
            logprob[i, c] = sum(float(logp[slot + j, t]) for j, t in enumerate(enc.response))
    predicted = logprob.argmax(axis=1)
    gold = np.array([task.labels.index(e.gold) for e in examples])
    rows = np.arange(len(examples))
    assert (np.abs(entropy[:, 0] - entropy[:, 1]) > 1e-2).all()  # the label read matters
    wrong = predicted != gold
    assert wrong.any() and (~wrong).any()  # the model is wrong on some of these, right on others

    def me(exs, response="own"):
        return score_examples(loaded, task, exs, Scoring("me", response=response, batch_size=8,
                                                         max_length=64))[0]

    own = me(examples)
    assert own == pytest.approx(entropy[rows, predicted], abs=1e-4)
    assert me(examples, "gold") == pytest.approx(entropy[rows, gold], abs=1e-4)
    assert (np.abs(own - entropy[rows, gold])[wrong] > 1e-2).all()
    flipped = [type(e)(e.id, e.prompt, e.response, "no" if e.gold == "yes" else "yes")
               for e in examples]
    assert me(flipped) == pytest.approx(own, abs=1e-6)  # the gold plays no part
    assert me(flipped, "gold") == pytest.approx(entropy[rows, 1 - gold], abs=1e-4)


def test_weight_decay_reaches_only_lora_b(setup):
    _, _, loaded = setup
    groups = optimizer_groups(loaded.model, 0.5)
    names = {id(p): n for n, p in loaded.model.named_parameters()}
    decayed = [names[id(p)] for p in groups[0]["params"]]
    plain = [names[id(p)] for p in groups[1]["params"]]
    assert groups[0]["weight_decay"] == 0.5 and groups[1]["weight_decay"] == 0.0
    assert decayed and all("lora_B" in n for n in decayed)
    assert plain and all("lora_A" in n for n in plain)
    assert len(decayed) == len(plain) == 2 * 7


@pytest.mark.parametrize("fused", [False, True])  # train_adapter fuses on CPU and CUDA
def test_weight_decay_shrinks_b_by_the_adamw_rule(setup, fused):
    """B = 0.5 everywhere (LoRA starts it at 0, which any decay leaves at 0), zero gradients:
    one AdamW step of lr 0.1 and decay 0.5 gives B = 0.5 · (1 − 0.1 · 0.5) = 0.475; A keeps
    its values."""
    _config, _task, loaded = setup
    _b_name, b_param = next((n, p) for n, p in loaded.model.named_parameters() if "lora_B" in n)
    a_param = next(p for n, p in loaded.model.named_parameters() if "lora_A" in n)
    for p in loaded.model.parameters():
        p.grad = None
    before_b, before_a = b_param.detach().clone(), a_param.detach().clone()
    try:
        with torch.no_grad():
            b_param.fill_(0.5)
        optimizer = torch.optim.AdamW(optimizer_groups(loaded.model, 0.5), lr=0.1, fused=fused)
        b_param.grad = torch.zeros_like(b_param)
        a_param.grad = torch.zeros_like(a_param)
        optimizer.step()
        assert torch.allclose(b_param, torch.full_like(b_param, 0.475))  # decoupled decay only
        assert torch.equal(a_param, before_a)
    finally:
        with torch.no_grad():
            b_param.copy_(before_b)
            a_param.copy_(before_a)
        for p in loaded.model.parameters():
            p.grad = None


@pytest.mark.parametrize(("warmup_ratio", "factors"), [
    (0.0, [1, 3 / 4, 1 / 2, 1 / 4]),  # 4 steps, no warm-up: (4 − step) / 4
    (0.5, [1 / 2, 1, 1, 1 / 2]),  # 2 warm-up steps (step + 1) / 2, then (4 − step) / 2
])
def test_train_adapter_steps_adamw_with_decay_on_b_and_the_linear_schedule(setup, monkeypatch,
                                                                            warmup_ratio, factors):
    """The optimizer train_adapter builds: AdamW, β on every lora_B weight and on nothing
    else, and the learning rate of each of its 4 steps (32 examples, batches of 8, 1 epoch)."""
    config, task, loaded = setup
    made = []

    class RecordingAdamW(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.step_lrs: list[list[float]] = []
            made.append(self)

        def step(self, closure=None):
            self.step_lrs.append([group["lr"] for group in self.param_groups])
            return super().step(closure)

    monkeypatch.setattr(star.model.training.torch.optim, "AdamW", RecordingAdamW)
    config.train.warmup_ratio = warmup_ratio
    assert (config.train.batch_size, config.train.epochs, config.train.lr) == (8, 1, 1e-3)
    train_adapter(loaded, task, task.train[:32], config=config.train, weight_decay_b=0.5,
                  seed=0, round_index=1, max_length=64)
    [optimizer] = made
    names = {id(p): n for n, p in loaded.model.named_parameters()}
    trainable = {n for n, p in loaded.model.named_parameters() if p.requires_grad}
    b_weights = {n for n in trainable if "lora_B" in n}
    assert len(b_weights) == 2 * 7 and len(trainable) == 2 * 2 * 7  # A and B, 7 modules, 2 layers
    decay = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            decay[names[id(p)]] = group["weight_decay"]
    assert decay == {n: 0.5 if n in b_weights else 0.0 for n in trainable}
    assert optimizer.step_lrs == [[pytest.approx(1e-3 * f)] * 2 for f in factors]


def test_training_lowers_the_loss_on_answer_tokens(setup):
    config, task, loaded = setup
    config.train.epochs = 8
    examples = task.train[:16]
    before = -score_examples(loaded, task, examples, Scoring("pe", batch_size=16, max_length=64)).mean()
    stats = train_adapter(loaded, task, examples,
                          config=config.train, weight_decay_b=0.0, seed=0, round_index=1, max_length=64)
    after = -score_examples(loaded, task, examples, Scoring("pe", batch_size=16, max_length=64)).mean()
    assert after > before and math.isfinite(stats.final_loss)
    assert 0.0 <= stats.padding_fraction < 0.5


def test_dropout_of_the_base_model_draws_from_the_rounds_seed(setup):
    """A model with attention dropout (not SmolLM2's, but some hub models'): training twice
    from the same adapter with the same seed and round gives the same adapter whatever state
    torch's global generator is in, and leaves that state as it was."""
    config, task, loaded = setup
    attention = [m for name, m in loaded.model.named_modules() if name.endswith("self_attn")]
    assert attention

    def trained(dropout: float, global_seed: int) -> dict[str, torch.Tensor]:
        for module in attention:
            module.attention_dropout = dropout
        load_adapter_state(loaded.model, start)
        torch.manual_seed(global_seed)
        before = torch.random.get_rng_state()
        train_adapter(loaded, task, task.train[:16], config=config.train, weight_decay_b=0.5,
                      seed=0, round_index=1, max_length=64)
        assert torch.equal(torch.random.get_rng_state(), before)
        return adapter_state(loaded.model)

    start = adapter_state(loaded.model)
    first, second, without = trained(0.5, 1), trained(0.5, 2), trained(0.0, 1)
    assert all(torch.equal(first[name], second[name]) for name in start)
    assert not all(torch.equal(first[name], without[name]) for name in start)  # dropout acted


def test_bf16_scores_agree_with_fp32_to_the_accumulation(setup):
    """bf16 runs the matmuls only; entropies are accumulated in fp32, so the scores keep fp32's
    size of error far better than bf16's 8 bits would (2^-8 of 6 nats is 2.3e-2).

    Not a rank test: on this tiny, near-uniform model all 40 scores lie within 1e-3 of each
    other, and bf16 error (3e-5, native or emulated kernel alike) reorders such near-ties; the
    rank agreement that matters, on the real model, is the bench's (docs/performance.md)."""
    _, task, loaded = setup
    examples = task.train[:40]
    fp32 = score_examples(loaded, task, examples, Scoring("me", batch_size=16, max_length=64))[0]
    loaded.compute_dtype = torch.bfloat16
    bf16 = score_examples(loaded, task, examples, Scoring("me", batch_size=16, max_length=64))[0]
    assert not np.array_equal(fp32, bf16)  # bf16 took effect
    # 1e-4 relative: 20x the error seen on AVX-512 and AVX2; bf16 accumulation would be 2e-2
    np.testing.assert_allclose(bf16, fp32, rtol=1e-4, atol=0)


def test_bf16_stored_weights_score_exactly_like_autocast_casts(tiny_overrides):
    """Weights stored in bf16 once give the numbers autocast gets by casting fp32 weights on
    every call; LoRA weights and the LM head stay fp32, and training still updates LoRA."""
    config = load_config(None, [*tiny_overrides, "model.dtype=bfloat16", "lora.dropout=0.0", "strategy=me"])
    task = load_task(config.task)
    stored = load_model(config.model)
    attach_lora(stored, config.lora, seed=0)
    cast = load_model(config.model.model_copy(update={"dtype": "float32"}))
    attach_lora(cast, config.lora, seed=0)
    cast.compute_dtype = torch.bfloat16  # fp32 weights, cast by autocast on every call
    for loaded in (stored, cast):
        train_adapter(loaded, task, task.train[:16],
                      config=config.train, weight_decay_b=0.5, seed=0, round_index=1, max_length=64)
    dtypes = {name: p.dtype for name, p in stored.model.named_parameters()}
    assert dtypes["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"] == torch.bfloat16
    assert all(dtype == torch.float32 for name, dtype in dtypes.items() if "lora_" in name)
    assert stored.model.get_output_embeddings().weight.dtype == torch.float32
    examples = task.train[16:40]
    for measure in ("me", "pe"):
        a, b = (score_examples(m, task, examples,
                Scoring(measure, batch_size=16, max_length=64)) for m in (stored, cast))
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_response_stats_needs_one_token_for_slot_labels(setup):
    _, _task, loaded = setup
    enc = encode(loaded.tokenizer, "Question: cat", " red fish", max_length=64, add_eos=False)
    with pytest.raises(ValueError, match="one-token"):
        response_stats(loaded, [enc], slot_labels=[1, 2])


def test_fast_dropout_keeps_the_dropout_distribution():
    from star.model.lora import FastDropout

    layer = FastDropout(0.1).train()
    with pytest.raises(RuntimeError, match="no generator"):  # never torch's global generator
        layer(torch.ones(4))
    layer.generator = torch.Generator().manual_seed(0)
    out = layer(torch.ones(400_000))
    dropped = (out == 0).float().view(-1, 4)  # each 64-bit draw feeds four neighbours
    assert dropped.mean(0).tolist() == pytest.approx([0.1] * 4, abs=0.003)
    assert float(dropped[:, 0] @ dropped[:, 1]) / len(dropped) == pytest.approx(0.01, abs=0.001)
    assert float(out.mean()) == pytest.approx(1.0, abs=0.005)
    assert out.unique().tolist() == [0.0, pytest.approx(1 / 0.9)]
    layer.generator = torch.Generator().manual_seed(1)
    first = layer(torch.ones(3, 5))
    layer.generator = torch.Generator().manual_seed(1)
    torch.manual_seed(123)  # the global state plays no part
    assert torch.equal(layer(torch.ones(3, 5)), first)
    assert torch.equal(layer.eval()(torch.ones(5)), torch.ones(5))


def test_answer_loss_equals_the_hf_loss_with_masked_labels(setup):
    from star.data.batching import pad_right
    from star.model.training import answer_loss

    _, task, loaded = setup
    items = [encode(loaded.tokenizer, e.prompt, e.response,
                    max_length=64, add_eos=False) for e in task.train[:5]]
    ids, mask = pad_right([e.ids for e in items], loaded.tokenizer.pad_token_id)
    labels = torch.full_like(ids, -100)
    for row, item in enumerate(items):
        labels[row, len(item.prompt): len(item)] = torch.tensor(item.response)
    with torch.no_grad():
        expected = loaded.model(input_ids=ids, attention_mask=mask, labels=labels).loss
        assert float(answer_loss(loaded, items)) == pytest.approx(float(expected), abs=1e-5)


def test_eager_attention_bytes_by_hand(setup):
    from star.model.training import eager_attention_bytes

    _, _, loaded = setup  # 2 layers, 4 heads
    assert eager_attention_bytes(loaded.model.config, 8, 16) == 2 * 8 * 4 * 16 * 16 * 6


def test_training_uses_eager_attention_where_it_fits_and_gives_the_same_loss(setup, monkeypatch):
    import star.model.training
    from star.model.training import answer_loss, training_attention

    config, task, loaded = setup
    causal = loaded.model.get_base_model()
    assert causal.config._attn_implementation == "sdpa"
    items = [encode(loaded.tokenizer, e.prompt, e.response, max_length=64, add_eos=False)
             for e in task.train[:6]]
    with torch.no_grad():
        fused = float(answer_loss(loaded, items))
        with training_attention(loaded, 8, 64):
            assert causal.config._attn_implementation == "eager"
            assert float(answer_loss(loaded, items)) == pytest.approx(fused, abs=1e-5)
    assert causal.config._attn_implementation == "sdpa"  # put back

    seen = []
    original = star.model.training.answer_loss

    def recording(loaded, items, **kwargs):
        seen.append(causal.config._attn_implementation)
        return original(loaded, items, **kwargs)

    monkeypatch.setattr(star.model.training, "answer_loss", recording)
    train_adapter(loaded, task, task.train[:16],
                  config=config.train, weight_decay_b=0.5, seed=0, round_index=1, max_length=64)
    assert seen == ["eager", "eager"]
    monkeypatch.setattr(star.model.training, "EAGER_ATTENTION_BYTES", 1000)  # too long for eager
    train_adapter(loaded, task, task.train[:8],
                  config=config.train, weight_decay_b=0.5, seed=0, round_index=1, max_length=64)
    assert seen[2:] == ["sdpa"]
    assert causal.config._attn_implementation == "sdpa"


def test_paper_style_reference_equals_batched_me_on_gold(setup):
    from star.tools.bench import reference_me

    _, task, loaded = setup
    examples = task.train[:10]
    ours = score_examples(loaded, task, examples,
                          Scoring("me", response="gold", batch_size=4, max_length=64))[0]
    assert np.allclose(ours, reference_me(loaded, examples, 64), atol=1e-4)


def test_bench_reports_every_required_figure(tiny_overrides, tmp_path):
    """`star bench` on the tiny model: every figure issue 4 names is there and plausible."""
    from star.tools.bench import bench_round, format_table, run_bench

    config = load_config(None, tiny_overrides)
    figures = run_bench(config, quick=True)
    figures["round"] = bench_round(config, tmp_path / "round", quick=True)
    assert set(figures["round"]) == {"score_select", "train", "evaluate"}
    assert all(seconds > 0 for seconds in figures["round"].values())
    assert figures["matmul_gflops"]["fp32"] > 0 and figures["peak_dtype"] == "fp32"  # tiny: fp32
    for name in ("me", "me-star", "pe"):
        row = figures["scoring"][name]
        assert row["examples_per_s"] > 0 and row["tokens_per_s"] > 0 and 0 < row["mfu"] < 1
    assert figures["reference"]["examples_per_s"] > 0 and figures["reference_speedup"] > 0
    assert figures["training"]["tokens_per_s"] > 0 and 0 <= figures["training"]["padding_fraction"] < 1
    assert figures["memory_mb"]["pool_1k"] > 0 and figures["memory_mb"]["pool_10k"] > 0
    # an fp32 model against its fp32 twin: the same batches through the same kernels, so the
    # same scores and Spearman 1, but only if the twin got the adapter trained since (without
    # it the top-8 overlap stayed 1 and Spearman fell to 0.993); > 0.999 rather than == 1, as
    # the scores lie 1e-3 apart and a near-tie must not hinge on summation order; bf16 against
    # fp32 is checked in test_bf16_fp32_agreement_by_hand
    assert figures["selection_overlap_bf16_fp32"] == 1.0 and figures["spearman_bf16_fp32"] > 0.999
    assert set(figures["profile"]) == {"scoring me", "scoring me-star", "training"}
    assert "aten::mm" in figures["profile"]["scoring me"]
    assert "where the time goes" in format_table(figures)


def test_bf16_fp32_agreement_reads_a_bf16_model_and_its_fp32_twin(setup):
    """The bench's bf16-vs-fp32 figures from a model computing in bf16 and its fp32 twin:
    the share of the top `loop.step` ME scores both pick, and the Spearman of the two lists."""
    from scipy.stats import rankdata

    from star.active.loop import subsample
    from star.seeding import numpy_rng
    from star.tools.bench import bf16_fp32_agreement, fp32_twin

    config, task, loaded = setup
    generator = torch.Generator().manual_seed(0)  # B of its own: setup's draws follow the global state
    with torch.no_grad():
        for name, param in loaded.model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    twin = fp32_twin(config, loaded)
    loaded.compute_dtype = torch.bfloat16
    overlap, rho = bf16_fp32_agreement(config, task, loaded, twin, size=60)
    pool = subsample(task.train, 60, numpy_rng(config.seed, 3, "pool"))
    scoring = Scoring("me", batch_size=config.uncertainty.batch_size, max_length=64)
    low, high = (score_examples(m, task, pool, scoring)[0] for m in (loaded, twin))
    assert not np.array_equal(low, high)  # bf16 took effect
    step = config.loop.step
    top = [set(np.argsort(-v, kind="stable")[:step].tolist()) for v in (low, high)]
    assert overlap == len(top[0] & top[1]) / step
    # Spearman: Pearson's r of the ranks, tied scores (bf16 rounding makes some) sharing
    # their mean rank
    assert rho == pytest.approx(np.corrcoef(rankdata(low), rankdata(high))[0, 1], abs=1e-12)


def test_bf16_fp32_agreement_on_scores_worked_by_hand(setup, monkeypatch):
    """bf16 ME scores [0.9, 0.8, 0.7, 0.1], fp32 [0.9, 0.1, 0.8, 0.7], step 2: the top 2 are
    {0, 1} and {0, 2}, overlap 1/2; ranks 4 3 2 1 against 4 1 3 2 differ by 0, 2, 1, 1, so
    Spearman's ρ = 1 − 6 · 6 / (4 · (4² − 1)) = 0.4."""
    from star.tools import bench

    config, task, loaded = setup
    twin = object()
    scores = {id(loaded): np.array([0.9, 0.8, 0.7, 0.1]), id(twin): np.array([0.9, 0.1, 0.8, 0.7])}
    monkeypatch.setattr(bench, "score_examples",
                        lambda model, task, pool, scoring: (scores[id(model)],))
    two = config.model_copy(update={"loop": config.loop.model_copy(update={"step": 2})})
    overlap, rho = bench.bf16_fp32_agreement(two, task, loaded, twin, size=4)
    assert overlap == 0.5
    assert rho == pytest.approx(0.4, abs=1e-12)
