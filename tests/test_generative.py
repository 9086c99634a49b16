"""Number and text tasks on the tiny model: ME over the model's own greedy response, PE over
the gold solution and its end token, and numbers parsed from what the model writes."""

import numpy as np
import pytest
import torch

from star.active.scorer import Scoring, score_examples
from star.config import load_config
from star.data.sources import load_task
from star.model.loading import load_model
from star.model.passes import encode_pairs, generate, predict, token_entropy
from tests.conftest import MC_MASKS, write_jsonl


def test_me_sums_entropy_over_the_greedy_response(number_setup):
    _config, task, loaded = number_setup
    examples = task.train[:3]
    me = score_examples(loaded, task, examples, Scoring("me", batch_size=8, max_length=64))
    generated = generate(loaded, task, examples, batch_size=8, max_length=64).tokens
    for i, example in enumerate(examples):
        ids = loaded.tokenizer(example.prompt).input_ids
        with torch.no_grad():
            out = loaded.model.generate(input_ids=torch.tensor([ids]), max_new_tokens=6,
                                        do_sample=False, output_logits=True,
                                        return_dict_in_generate=True,
                                        pad_token_id=loaded.tokenizer.pad_token_id,
                                        eos_token_id=loaded.tokenizer.eos_token_id)
        steps = len(generated[i])
        assert out.sequences[0, len(ids): len(ids) + steps].tolist() == generated[i]
        expected = sum(float(token_entropy(out.logits[j][0])) for j in range(steps))
        assert me[0, i] == pytest.approx(expected, rel=1e-4)


def test_mc_passes_rescore_the_greedy_response_like_the_single_pass(number_setup):
    """With dropout at 0 the teacher-forced MC path must equal the generation-time entropy."""
    _, task, loaded = number_setup
    from star.config import LoraConfig
    from star.model.lora import attach_lora

    attach_lora(loaded, LoraConfig(r=4, alpha=8, dropout=0.0), seed=0)
    examples = task.train[:4]
    single = score_examples(loaded, task, examples, Scoring("me", batch_size=8, max_length=64))
    passes = score_examples(loaded, task, examples,
                            Scoring("me", passes=2, batch_size=8, max_length=64), masks=MC_MASKS())
    assert np.allclose(passes, np.repeat(single, 2, axis=0), rtol=1e-4)


QUESTION = "Tom has 3 cats and 4 dogs. How many pets does he have?"
SOLUTION = "He has 3 + 4 = 7 pets.\n#### 7"
INSTRUCTION = ("Answer the above question. First, think step by step and then answer the final "
               "number.")


@pytest.fixture
def gsm8k_setup(tiny_model_dir, tmp_path):
    """The built-in GSM8K task on three of its records, with room for its long instruction."""
    write_jsonl(tmp_path / "train.jsonl", [
        {"question": QUESTION, "answer": SOLUTION},
        {"question": "Ann reads 2 books a day. How many in 3 days?", "answer": "2 * 3 = 6\n#### 6"},
        {"question": "A box holds 12 eggs; 5 break. How many are left?",
         "answer": "12 - 5 = 7\n#### 7"}])
    write_jsonl(tmp_path / "test.jsonl", [{"question": QUESTION, "answer": SOLUTION},
                                          {"question": QUESTION, "answer": "3 + 5 = 8\n#### 8"}])
    config = load_config(None, [f"model.name={tiny_model_dir}", "model.dtype=float32",
                                "model.max_length=256", "task.name=gsm8k",
                                f"task.data_dir={tmp_path}", "task.max_new_tokens=64"])
    return load_task(config.task), load_model(config.model)


def test_gsm8k_gold_response_says_the_final_answer(gsm8k_setup):
    """The model trains on and is scored against the solution with '####' spelled out as
    'The final answer is', which is what the answer parser looks for."""
    task, _ = gsm8k_setup
    example = task.train[0]
    assert example.prompt == f"{QUESTION}\n{INSTRUCTION}\n"
    assert example.response == "He has 3 + 4 = 7 pets.\nThe final answer is 7"
    assert example.gold == "7" and example.answer == SOLUTION
    labeled = task.with_label(example, "3 + 4 = 7 pets\n#### 7")  # an annotator's answer
    assert labeled.response == "3 + 4 = 7 pets\nThe final answer is 7" and labeled.gold == "7"


def test_pe_is_the_nll_of_the_gold_solution_and_its_eos(gsm8k_setup):
    """PE (Eq. 3) sums -log p over every token of the gold solution and the end token that
    closes it, all read in one teacher-forced pass; computed here from plain logits."""
    task, loaded = gsm8k_setup
    tokenizer, eos = loaded.tokenizer, loaded.tokenizer.eos_token_id
    examples = task.train
    encoded = encode_pairs(loaded, task, [(e.prompt, e.response) for e in examples], 256)
    for item, example in zip(encoded, examples, strict=True):
        assert item.response[-1] == eos
        assert tokenizer.decode(item.response[:-1]) == example.response
    pe = score_examples(loaded, task, examples, Scoring("pe", batch_size=8, max_length=256))
    for i, example in enumerate(examples):
        prompt = tokenizer(example.prompt).input_ids
        response = [*tokenizer(example.response, add_special_tokens=False).input_ids, eos]
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            logprobs = torch.log_softmax(loaded.model(input_ids=ids).logits[0].float(), dim=-1)
        steps = range(len(prompt) - 1, ids.shape[1] - 1)  # position t predicts token t + 1
        expected = -sum(float(logprobs[t, ids[0, t + 1]]) for t in steps)
        assert pe[0, i] == pytest.approx(expected, rel=1e-4)


def test_predictions_parse_the_number_the_model_writes(gsm8k_setup):
    """A model that learned the first solution by heart writes 'The final answer is 7'; the
    prediction is the number 7, right for a gold 7 and wrong for a gold 8."""
    task, loaded = gsm8k_setup
    example, tokenizer = task.train[0], loaded.tokenizer
    prompt = tokenizer(example.prompt).input_ids
    response = [*tokenizer(example.response, add_special_tokens=False).input_ids,
                tokenizer.eos_token_id]
    ids = torch.tensor([prompt + response])
    optimizer = torch.optim.Adam(loaded.model.parameters(), lr=1e-2)
    loaded.model.train()
    for _ in range(60):
        logits = loaded.model(input_ids=ids[:, :-1]).logits[0, len(prompt) - 1:]
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor(response))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    loaded.model.eval()
    [tokens, _] = generate(loaded, task, task.test, batch_size=8, max_length=256).tokens
    assert "The final answer is 7" in tokenizer.decode(tokens, skip_special_tokens=True)
    right, wrong = predict(loaded, task, task.test, batch_size=8, max_length=256)
    assert (right.prediction, right.gold, right.correct) == ("7", "7", True)
    assert (wrong.prediction, wrong.gold, wrong.correct) == ("7", "8", False)
    assert 0.5 < right.confidence <= 1.0
