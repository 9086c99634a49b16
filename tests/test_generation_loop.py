"""Our greedy decoding loop (prefill once, then only the live rows, finished rows leaving the
batch and the KV cache) against transformers' `generate` and hand computations, on the tiny
model; and the bench's generative row that times it."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml

from star.config import LoraConfig, load_config
from star.data.sources import load_task
from star.data.tasks import Example
from star.errors import ConfigError
from star.model.loading import load_model
from star.model.lora import attach_lora, backbone_and_head
from star.model.passes import generate, token_entropy, token_logprob
from star.tools import bench
from tests.conftest import write_jsonl

PROMPTS = ["red", "cat dog fish sun rain tree stone", "blue green", "sun rain tree",
           "Question: cat dog\nAnswer:", "stone fish"]
STEPS = 12


def hf_greedy(loaded, prompt: list[int], eos: int, steps: int) -> list[int]:
    """transformers' own greedy decoding of one prompt alone, up to and including `eos`."""
    with torch.no_grad():
        out = loaded.model.generate(input_ids=torch.tensor([prompt]),
                                    attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                    max_new_tokens=steps, do_sample=False,
                                    pad_token_id=loaded.tokenizer.pad_token_id, eos_token_id=eos)
    tokens = out[0, len(prompt):].tolist()
    return tokens[: tokens.index(eos) + 1] if eos in tokens else tokens


@pytest.fixture(params=["plain", "lora"])
def early_stops(request, number_setup):
    """Prompts of different lengths, with the end token set to a token the model writes, so
    that some rows end early, at different steps, and some run to `max_new_tokens`.

    The tiny model's weights are redrawn larger (std 0.3): at its init scale it repeats one
    token forever. With `lora` the model is a PeftModel whose adapter changes the outputs."""
    _, task, loaded = number_setup
    torch.manual_seed(0)
    with torch.no_grad():
        for param in loaded.model.parameters():
            if param.dim() == 2:
                param.normal_(0, 0.3)
    if request.param == "lora":
        attach_lora(loaded, LoraConfig(r=4, alpha=8, dropout=0.0), seed=0)
        with torch.no_grad():
            for name, param in loaded.model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.5)
    tokenizer = loaded.tokenizer
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    free = [hf_greedy(loaded, p, tokenizer.eos_token_id, STEPS) for p in prompts]

    def stops(token: int) -> list[int]:
        return [row.index(token) + 1 if token in row else STEPS for row in free]

    end = max({t for row in free for t in row}, key=lambda t: len(set(stops(t))))
    ends = stops(end)
    assert STEPS in ends and len({s for s in ends if s < STEPS}) >= 2, ends
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(end)
    examples = [Example(f"p{i}", p, None, None) for i, p in enumerate(PROMPTS)]
    return replace(task, max_new_tokens=STEPS), loaded, examples, prompts, ends


def test_tokens_equal_transformers_generate_on_each_prompt_alone(early_stops):
    task, loaded, examples, prompts, ends = early_stops
    eos = loaded.tokenizer.eos_token_id
    ours = generate(loaded, task, examples, batch_size=len(examples), max_length=64).tokens
    assert [len(t) for t in ours] == ends
    assert ours == [hf_greedy(loaded, p, eos, STEPS) for p in prompts]


def test_entropy_and_logprob_equal_a_teacher_forced_pass(early_stops):
    """Per row: Σ entropy and mean log p over the generated tokens (the end token included),
    equal to one full forward over prompt + response, position t predicting token t + 1."""
    task, loaded, examples, prompts, _ = early_stops
    out = generate(loaded, task, examples, batch_size=len(examples), max_length=64)
    for row, (prompt, tokens) in enumerate(zip(prompts, out.tokens, strict=True)):
        with torch.no_grad():
            logits = loaded.model(input_ids=torch.tensor([prompt + tokens])).logits[0].float()
        at = logits[len(prompt) - 1: -1]
        # cached decoding against one full pass: other kernels for every logit, so each token's
        # fp32 entropy moves by a few ulps; 1e-5 of the sum holds on AVX2 and AVX-512 alike,
        # while one token's entropy missing or counted twice moves it by 1e-2 and more
        assert out.entropy[row] == pytest.approx(float(token_entropy(at).sum()), rel=1e-5)
        assert out.mean_logprob[row] == pytest.approx(
            float(token_logprob(at, torch.tensor(tokens)).mean()), abs=1e-5)


def test_batched_equals_one_at_a_time(early_stops):
    task, loaded, examples, _, _ = early_stops
    batched = generate(loaded, task, examples, batch_size=4, max_length=64)
    single = generate(loaded, task, examples, batch_size=1, max_length=64)
    assert batched.tokens == single.tokens
    # fp32 sums of ~50 nats (ulp 4e-6) over tokens whose logits a padded batch computes in
    # other shapes: a few ulps per token, so 1e-5 of the sum (~130 ulps) whatever the kernels
    assert np.allclose(batched.entropy, single.entropy, rtol=1e-5, atol=0)
    assert np.allclose(batched.mean_logprob, single.mean_logprob, rtol=0, atol=1e-5)


def test_features_keep_the_prompts_last_hidden_state(early_stops):
    """The hook keeps the prefill's state, not a decoding step's (the first backbone call)."""
    task, loaded, examples, prompts, _ = early_stops
    out = generate(loaded, task, examples, batch_size=4, max_length=64, features=True)
    backbone = backbone_and_head(loaded.model)[0]
    for row, prompt in enumerate(prompts):
        with torch.no_grad():
            state = backbone(input_ids=torch.tensor([prompt])).last_hidden_state[0, -1]
        assert np.allclose(out.hidden[row], state.numpy(), rtol=0, atol=1e-5)


def test_bench_generative_row_times_both_paths(tiny_model_dir, tmp_path):
    """The bench's generative row on the built-in GSM8K task (three records): both paths give
    the same responses, the quick mode caps max_new_tokens, and the table shows the row."""
    write_jsonl(tmp_path / "train.jsonl", [
        {"question": f"Ann reads {n} books a day. How many in 3 days?", "answer": f"#### {3 * n}"}
        for n in (2, 5, 11)])
    write_jsonl(tmp_path / "test.jsonl", [{"question": "1 + 1?", "answer": "#### 2"}])
    config = load_config(None, [f"model.name={tiny_model_dir}", "model.dtype=float32",
                                "model.max_length=256", "task.name=gsm8k",
                                f"task.data_dir={tmp_path}", "task.max_new_tokens=100",
                                "uncertainty.batch_size=2"])
    task, loaded = load_task(config.task), load_model(config.model)
    figures = bench.bench_generation(loaded, config, task, quick=True)
    assert figures["prompts"] == 3 and figures["max_new_tokens"] == 64
    assert figures["prompt_tokens_mean"] > 20  # the question and GSM8K's instruction
    assert figures["batched"]["batch_size"] == 2 and figures["one_at_a_time"]["batch_size"] == 1
    for path in ("batched", "one_at_a_time"):
        assert 3 <= figures[path]["generated_tokens"] <= 3 * 64
        assert figures[path]["tokens_per_s"] > 0
    assert figures["speedup"] > 0 and figures["same_responses"] == 1.0
    table = "\n".join(bench.generative_lines({"generative": figures}))
    assert "| batched loop | 2 |" in table and "| one at a time | 1 |" in table
    assert "not measured" in bench.generative_lines({})[0]


def test_bench_refuses_a_choice_task_as_the_generative_one(toy_data_dir, tmp_path):
    """Checked before the bench starts, so a wrong --generative-config fails at once."""
    path = tmp_path / "choice.yaml"
    path.write_text(yaml.safe_dump({"task": {"name": "custom", "data_dir": str(toy_data_dir),
                                             "prompt": "Question: {question}\nAnswer:",
                                             "labels": ["yes", "no"]}}))
    with pytest.raises(ConfigError, match="not generative"):
        bench.main(None, [], quick=True, json_path=None, data_dir=None,
                   generative_config=str(path))
