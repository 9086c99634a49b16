"""Model passes over examples: uncertainty per MC pass, and predictions with confidence.

Logits are computed only where a score needs them (the response positions), with the
LM head in fp32, so a one-token answer costs one vocabulary projection per example.
MC dropout (Eq. 7) keeps the base model in eval mode and turns on only LoRA's dropout;
the K passes run as one batch of K copies, each row drawing its own dropout mask.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from star.batching import Encoded, encode, pad_left, pad_right, response_positions, sorted_batches
from star.models import LoadedModel
from star.progress import progress
from star.tasks import Example, Task
from star.uncertainty import token_entropy, token_logprob

POSITION_CHUNK = 512
"""Response positions projected onto the vocabulary at once (bounds fp32 logits memory)."""


@contextmanager
def mc_dropout(model: nn.Module) -> Iterator[int]:
    """Eval mode everywhere except LoRA's dropout modules; yields how many were switched on."""
    model.eval()
    switched = [module for name, module in model.named_modules()
                if "lora_dropout" in name and isinstance(module, nn.Dropout)]
    for module in switched:
        module.train()
    try:
        yield len(switched)
    finally:
        for module in switched:
            module.eval()


def adapter_off(model: nn.Module):
    """The base model's view: a PEFT model with its adapter disabled, or the model itself."""
    return model.disable_adapter() if hasattr(model, "disable_adapter") else nullcontext()


def causal_lm(model: nn.Module) -> nn.Module:
    """The transformers causal LM: under a PEFT wrapper, or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def backbone_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    causal = causal_lm(model)
    return getattr(causal, causal.base_model_prefix), causal.get_output_embeddings()


@dataclass
class ResponseStats:
    """Sums over each sequence's response tokens, one row per pass: [passes, sequences]."""

    entropy: np.ndarray
    logprob: np.ndarray
    slot_logprob: np.ndarray | None = None
    """[passes, sequences, labels]: log p(label) at the answer slot, for one-token responses."""


@torch.no_grad()
def response_stats(loaded: LoadedModel, encoded: Sequence[Encoded], passes: int = 1,
                   mc: bool = False, batch_size: int = 32, slot_labels: list[int] | None = None,
                   desc: str = "scoring") -> ResponseStats:
    """Teacher-forced entropy and log-likelihood of each sequence's response tokens.

    With `mc` the K passes see independent LoRA dropout masks; without it they are one
    deterministic pass repeated. `slot_labels` (token ids) needs one-token responses.
    """
    model = loaded.model
    backbone, head = backbone_and_head(model)
    weight = head.weight.float()
    runs = passes if mc else 1
    entropy = np.zeros((runs, len(encoded)))
    logprob = np.zeros((runs, len(encoded)))
    slot_logprob = None if slot_labels is None else np.zeros((runs, len(encoded), len(slot_labels)))
    pad_id = loaded.tokenizer.pad_token_id
    batches = sorted_batches([len(e) for e in encoded], max(1, batch_size // runs))
    with mc_dropout(model) if mc else nullcontext():
        if not mc:
            model.eval()
        for batch in progress(batches, desc, unit="batch"):
            items = [encoded[i] for i in batch]
            ids, mask = pad_right([e.inputs for e in items], pad_id)
            ids, mask = ids.repeat(runs, 1).to(loaded.device), mask.repeat(runs, 1).to(loaded.device)
            with loaded.autocast():
                hidden = backbone(input_ids=ids, attention_mask=mask,
                                  use_cache=False).last_hidden_state  # one pass: no KV cache
            rows_t, cols_t, targets_t = response_positions(items, runs, loaded.device)
            ent = torch.empty(len(rows_t), device=loaded.device)
            lp = torch.empty(len(rows_t), device=loaded.device)
            kept = []
            for lo in range(0, len(rows_t), POSITION_CHUNK):
                part = slice(lo, lo + POSITION_CHUNK)
                logits = hidden[rows_t[part], cols_t[part]].float() @ weight.T  # [M, vocab]
                ent[part] = token_entropy(logits)
                lp[part] = token_logprob(logits, targets_t[part])
                if slot_labels is not None:
                    kept.append(torch.log_softmax(logits, dim=-1)[:, slot_labels].cpu())
            seq_ent = torch.zeros(ids.shape[0], device=loaded.device).index_add_(0, rows_t, ent)
            seq_lp = torch.zeros(ids.shape[0], device=loaded.device).index_add_(0, rows_t, lp)
            entropy[:, batch] = seq_ent.view(runs, len(items)).cpu().numpy()
            logprob[:, batch] = seq_lp.view(runs, len(items)).cpu().numpy()
            if slot_logprob is not None:
                if len(rows_t) != ids.shape[0]:
                    raise ValueError("slot_labels needs one-token responses")
                slot_logprob[:, batch] = torch.cat(kept).view(runs, len(items), -1).numpy()
    if runs < passes:
        entropy, logprob = np.repeat(entropy, passes, 0), np.repeat(logprob, passes, 0)
        if slot_logprob is not None:
            slot_logprob = np.repeat(slot_logprob, passes, 0)
    return ResponseStats(entropy, logprob, slot_logprob)


def _encode_all(loaded: LoadedModel, task: Task, prompts: Sequence[str],
                responses: Sequence[str], max_length: int) -> list[Encoded]:
    return [encode(loaded.tokenizer, p, r, max_length, add_eos=task.generative)
            for p, r in zip(prompts, responses, strict=True)]


def choice_token_ids(loaded: LoadedModel, task: Task) -> list[list[int]]:
    return [loaded.tokenizer(c, add_special_tokens=False).input_ids for c in task.choices]


@dataclass
class ChoiceOutputs:
    label_logprob: np.ndarray
    """[passes, examples, labels]: log p(label's tokens | prompt)."""
    entropy: np.ndarray
    """[passes, examples, labels]: entropy summed over the positions of each label's tokens."""


def choice_outputs(loaded: LoadedModel, task: Task, examples: Sequence[Example], passes: int,
                   mc: bool, batch_size: int, max_length: int, desc: str) -> ChoiceOutputs:
    """Label log-probabilities and entropies. One-token labels share one pass over the prompt."""
    label_ids = choice_token_ids(loaded, task)
    n_labels = len(label_ids)
    if all(len(ids) == 1 for ids in label_ids):
        firsts = [ids[0] for ids in label_ids]
        gold_first = [firsts[task.labels.index(e.gold)] if e.gold in task.labels else firsts[0]
                      for e in examples]
        encoded = [Encoded(encode(loaded.tokenizer, e.prompt, "", max_length, False).prompt, [g])
                   for e, g in zip(examples, gold_first, strict=True)]
        stats = response_stats(loaded, encoded, passes, mc, batch_size, slot_labels=firsts,
                               desc=desc)
        entropy = np.repeat(stats.entropy[:, :, None], n_labels, axis=2)
        return ChoiceOutputs(stats.slot_logprob, entropy)
    prompts = [e.prompt for e in examples for _ in range(n_labels)]
    responses = [c for _ in examples for c in task.choices]
    encoded = _encode_all(loaded, task, prompts, responses, max_length)
    stats = response_stats(loaded, encoded, passes, mc, batch_size, desc=desc)
    shape = (stats.entropy.shape[0], len(examples), n_labels)
    return ChoiceOutputs(stats.logprob.reshape(shape), stats.entropy.reshape(shape))


@dataclass
class Generation:
    tokens: list[list[int]]
    """Greedy response ids per example, up to and including the end token."""
    mean_logprob: np.ndarray
    entropy: np.ndarray
    """ME (Eq. 2) of each response, from the logits generation already computed."""


@torch.no_grad()
def generate(loaded: LoadedModel, task: Task, examples: Sequence[Example], batch_size: int,
             max_length: int, desc: str = "generating") -> Generation:
    """Batched greedy decoding with the KV cache; each sequence stops at its end token."""
    tokenizer = loaded.tokenizer
    prompts = [encode(tokenizer, e.prompt, "", max_length - task.max_new_tokens, False).prompt
               for e in examples]
    result = Generation([[] for _ in examples], np.zeros(len(examples)), np.zeros(len(examples)))
    loaded.model.eval()
    for batch in progress(sorted_batches([len(p) for p in prompts], batch_size), desc,
                          unit="batch"):
        ids, mask = pad_left([prompts[i] for i in batch], tokenizer.pad_token_id)
        with loaded.autocast():
            out = loaded.model.generate(
                input_ids=ids.to(loaded.device), attention_mask=mask.to(loaded.device),
                max_new_tokens=task.max_new_tokens, do_sample=False, output_logits=True,
                return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id)
        new = out.sequences[:, ids.shape[1]:]  # [batch, steps]
        lengths = []
        for row in range(len(batch)):
            tokens = new[row].tolist()
            if tokenizer.eos_token_id in tokens:
                tokens = tokens[: tokens.index(tokenizer.eos_token_id) + 1]
            result.tokens[batch[row]] = tokens
            lengths.append(len(tokens))
        live = torch.arange(new.shape[1])[None, :] < torch.tensor(lengths)[:, None]
        entropy = torch.stack([token_entropy(step) for step in out.logits], dim=1).cpu()
        logprob = torch.stack([token_logprob(step, new[:, j]) for j, step in
                               enumerate(out.logits)], dim=1).cpu()  # [batch, steps]
        sums = (logprob * live).sum(1)
        result.entropy[batch] = (entropy * live).sum(1).numpy()
        result.mean_logprob[batch] = (sums / live.sum(1).clamp_min(1)).numpy()
    return result


def uncertainty(loaded: LoadedModel, task: Task, examples: Sequence[Example], measure: str,
                response: str, passes: int, mc: bool, batch_size: int, max_length: int,
                desc: str = "scoring") -> np.ndarray:
    """Per-pass uncertainty [passes, examples]: `me` (Eq. 2) or `pe` (Eq. 3)."""
    if not task.generative:
        out = choice_outputs(loaded, task, examples, passes, mc, batch_size, max_length, desc)
        gold = np.array([task.labels.index(e.gold) for e in examples])
        rows = np.arange(len(examples))
        if measure == "pe":
            return -out.label_logprob[:, rows, gold]
        if response == "gold":
            return out.entropy[:, rows, gold]
        predicted = out.label_logprob.argmax(axis=2)  # [passes, examples]
        return np.take_along_axis(out.entropy, predicted[:, :, None], axis=2)[:, :, 0]
    if measure == "pe" or response == "gold":
        encoded = _encode_all(loaded, task, [e.prompt for e in examples],
                              [e.response for e in examples], max_length)
    else:
        generation = generate(loaded, task, examples, batch_size, max_length)
        if not mc:  # the greedy pass already gave every response token's distribution
            return np.repeat(generation.entropy[None, :], passes, axis=0)
        encoded = [Encoded(encode(loaded.tokenizer, e.prompt, "", max_length, False).prompt,
                           tokens or [loaded.tokenizer.eos_token_id])
                   for e, tokens in zip(examples, generation.tokens, strict=True)]
    stats = response_stats(loaded, encoded, passes, mc, batch_size, desc=desc)
    return -stats.logprob if measure == "pe" else stats.entropy


@dataclass
class Prediction:
    id: str
    prediction: str
    gold: str
    correct: bool
    confidence: float


def predict(loaded: LoadedModel, task: Task, examples: Sequence[Example], batch_size: int,
            max_length: int) -> list[Prediction]:
    """Answers on the test split. Choice: argmax over labels, confidence renormalised over them.

    Generative: greedy answer, confidence the geometric-mean token probability.
    """
    if not task.generative:
        out = choice_outputs(loaded, task, examples, 1, False, batch_size, max_length, "evaluating")
        probs = torch.softmax(torch.from_numpy(out.label_logprob[0]), dim=-1).numpy()
        best = probs.argmax(axis=1)
        return [Prediction(e.id, task.labels[b], e.gold, task.labels[b] == e.gold, float(p[b]))
                for e, b, p in zip(examples, best, probs, strict=True)]
    generation = generate(loaded, task, examples, batch_size, max_length, desc="evaluating")
    predictions = []
    for example, tokens, lp in zip(examples, generation.tokens, generation.mean_logprob,
                                   strict=True):
        answer = task.parse(loaded.tokenizer.decode(tokens, skip_special_tokens=True))
        predictions.append(Prediction(example.id, answer, example.gold,
                                      task.is_correct(answer, example.gold), float(np.exp(lp))))
    return predictions
