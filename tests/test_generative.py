"""Number and text tasks on the tiny model: ME over the model's own greedy response."""

import numpy as np
import pytest
import torch

from star.active.scorer import Scoring, score_examples
from star.config import load_config
from star.data.sources import load_task
from star.model.loading import load_model
from star.model.passes import generate, predict, token_entropy
from tests.conftest import MC_MASKS, write_jsonl


@pytest.fixture
def number_setup(tiny_overrides, tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": f"{a} cat {b}", "answer": str(a + b)}
                                           for a in range(4) for b in range(3)])
    write_jsonl(tmp_path / "test.jsonl", [{"question": "1 cat 2", "answer": "3"}])
    config = load_config(None, [*tiny_overrides, f"task.data_dir={tmp_path}",
                                "task.answer_type=number", "task.labels=null",
                                "task.max_new_tokens=6"])
    return config, load_task(config.task), load_model(config.model)


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


def test_pe_scores_the_gold_solution_and_eos(number_setup):
    _config, task, loaded = number_setup
    pe = score_examples(loaded, task, task.train[:4], Scoring("pe", batch_size=8, max_length=64))
    assert pe.shape == (1, 4) and np.all(pe > 0)


def test_predictions_parse_numbers(number_setup):
    _config, task, loaded = number_setup
    [prediction] = predict(loaded, task, task.test, batch_size=8, max_length=64)
    assert prediction.gold == "3"
    assert prediction.correct == (prediction.prediction == "3")
    assert 0.0 < prediction.confidence <= 1.0
