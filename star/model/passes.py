"""Forward passes over examples, returning typed records of what a score or an answer needs.

Logits are computed only where a score needs them (the response positions), with the
LM head in fp32, so a one-token answer costs one vocabulary projection per example.
MC dropout (Eq. 7) keeps the base model in eval mode and turns on only LoRA's dropout;
the K passes run as one batch of K copies, each row drawing its own dropout mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from star.data.batching import Encoded, encode, pad_left, pad_right, response_positions, sorted_batches
from star.data.tasks import Example, Task
from star.model.loading import LoadedModel
from star.model.lora import backbone_and_head, causal_lm, dropout_generator, mc_dropout
from star.progress import progress

POSITION_CHUNK = 512
"""Response positions projected onto the vocabulary at once (bounds fp32 logits memory)."""

ENTROPY_CLIP = 1e-6
"""Probabilities are clipped at this value inside the log only (p · log max(p, clip)), so a
token of tiny probability adds ~0 to the entropy. The paper's code clips both factors,
max(p, clip) · log max(p, clip), which adds up to |V| · clip · 13.8 nats per token."""


def token_entropy(logits: torch.Tensor, clip: float = ENTROPY_CLIP) -> torch.Tensor:
    """Entropy in nats of softmax(logits) over the last axis, computed in fp32.

    logits: [..., vocab] -> [...]
    """
    return probs_entropy(torch.softmax(logits.float(), dim=-1), clip)


def probs_entropy(probs: torch.Tensor, clip: float = ENTROPY_CLIP) -> torch.Tensor:
    """Entropy in nats of distributions over the last axis, p · log max(p, clip)."""
    return -(probs * torch.log(probs.clamp_min(clip))).sum(dim=-1)


def mutual_information(probs: torch.Tensor) -> torch.Tensor:
    """BALD of one token: H[mean_k p_k] − mean_k H[p_k] for K passes' distributions
    [passes, positions, vocab] -> [positions]; 0 when the passes agree."""
    return probs_entropy(probs.mean(0)) - probs_entropy(probs).mean(0)


def token_logprob(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under softmax(logits), fp32. logits [M, vocab], targets [M] -> [M]."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


@dataclass
class ResponseStats:
    """Sums over each sequence's response tokens, one row per pass: [passes, sequences]."""

    entropy: np.ndarray
    logprob: np.ndarray
    slot_logprob: np.ndarray | None = None
    """[passes, sequences, labels]: log p(label) at the answer slot, for one-token responses."""
    mutual_information: np.ndarray | None = None
    """[sequences]: Σ over response tokens of H[mean_k p_k] − mean_k H[p_k] (MC passes only)."""
    hidden: np.ndarray | None = None
    """[sequences, hidden size]: the last hidden state at the answer position (the one that
    predicts the first response token), mean over passes; the batch rules' embedding."""


@torch.no_grad()
def response_stats(loaded: LoadedModel, encoded: Sequence[Encoded], *, passes: int = 1,
                   masks: torch.Generator | None = None, batch_size: int = 32,
                   slot_labels: list[int] | None = None, features: bool = False,
                   desc: str = "scoring") -> ResponseStats:
    """Teacher-forced entropy and log-likelihood of each sequence's response tokens.

    With `masks` (MC dropout) the K passes see independent LoRA dropout masks drawn from that
    generator, and the per-token mutual information between them is summed too; without it
    they are one deterministic pass repeated. `slot_labels` (token ids) needs one-token
    responses. `features` keeps each sequence's hidden state at the answer position.
    """
    mc = masks is not None
    model = loaded.model
    backbone, head = backbone_and_head(model)
    project = fp32_head(head)
    runs = passes if mc else 1
    entropy = np.zeros((runs, len(encoded)))
    logprob = np.zeros((runs, len(encoded)))
    slot_logprob = None if slot_labels is None else np.zeros((runs, len(encoded), len(slot_labels)))
    information = np.zeros(len(encoded)) if mc else None
    kept_hidden: np.ndarray | None = None
    pad_id = loaded.tokenizer.pad_token_id
    batches = sorted_batches([len(e) for e in encoded], max(1, batch_size // runs))
    device = loaded.device
    with (mc_dropout(model) if mc else nullcontext()), \
            (dropout_generator(model, masks) if mc else nullcontext()):
        if not mc:
            model.eval()
        for batch in progress(batches, desc, unit="batch"):
            items = [encoded[i] for i in batch]
            ids, mask = pad_right([e.inputs for e in items], pad_id)
            ids, mask = ids.repeat(runs, 1).to(device), mask.repeat(runs, 1).to(device)
            with loaded.autocast():
                hidden = backbone(input_ids=ids, attention_mask=mask,
                                  use_cache=False).last_hidden_state  # one pass: no KV cache
            rows_t, cols_t, targets_t = response_positions(items, runs, device)
            per_pass = len(rows_t) // runs  # positions are pass-major, the same in every pass
            ent = torch.empty(len(rows_t), device=device)
            lp = torch.empty(len(rows_t), device=device)
            mi = torch.zeros(per_pass, device=device)
            slots = None if slot_labels is None else torch.empty(len(rows_t), len(slot_labels))
            step = max(1, POSITION_CHUNK // runs)
            for lo in range(0, per_pass, step):  # each chunk holds its positions in all passes
                local = torch.arange(lo, min(lo + step, per_pass), device=device)
                at = (torch.arange(runs, device=device)[:, None] * per_pass + local).reshape(-1)
                logits = project(hidden[rows_t[at], cols_t[at]])  # [runs·m, vocab]
                ent[at] = token_entropy(logits)
                lp[at] = token_logprob(logits, targets_t[at])
                if mc:
                    mi[local] = mutual_information(
                        torch.softmax(logits, dim=-1).view(runs, len(local), -1))
                if slots is not None:
                    slots[at.cpu()] = torch.log_softmax(logits, dim=-1)[:, slot_labels].cpu()
            entropy[:, batch] = row_sums(ent, rows_t, ids.shape[0]).view(runs, len(items)).numpy()
            logprob[:, batch] = row_sums(lp, rows_t, ids.shape[0]).view(runs, len(items)).numpy()
            if information is not None:
                information[batch] = row_sums(mi, rows_t[:per_pass], len(items)).numpy()
            if slot_logprob is not None and slots is not None:
                if len(rows_t) != ids.shape[0]:
                    raise ValueError("slot_labels needs one-token responses")
                slot_logprob[:, batch] = slots.view(runs, len(items), -1).numpy()
            if features:
                answer = torch.tensor([len(e.prompt) - 1 for e in items] * runs, device=device)
                states = hidden[torch.arange(ids.shape[0], device=device), answer].float()
                states = states.view(runs, len(items), -1).mean(0).cpu().numpy()
                if kept_hidden is None:
                    kept_hidden = np.zeros((len(encoded), states.shape[1]), dtype=np.float32)
                kept_hidden[batch] = states
    if runs < passes:
        entropy, logprob = np.repeat(entropy, passes, 0), np.repeat(logprob, passes, 0)
        if slot_logprob is not None:
            slot_logprob = np.repeat(slot_logprob, passes, 0)
    return ResponseStats(entropy, logprob, slot_logprob, mutual_information=information,
                         hidden=kept_hidden)


def row_sums(values: torch.Tensor, rows: torch.Tensor, count: int) -> torch.Tensor:
    """Per-position values summed per sequence ([positions] -> [count]), on the CPU: CUDA's
    index_add adds atomically in no fixed order, which would change a score's last bits from
    one run to the next."""
    return torch.zeros(count, dtype=values.dtype).index_add_(0, rows.cpu(), values.cpu())


def fp32_head(head: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The LM head as an fp32 projection, its weight (and bias, where the head has one, as
    training's forward uses it) cast once: hidden states [..., d] -> logits [..., vocab]."""
    weight = head.weight.float()
    bias = None if getattr(head, "bias", None) is None else head.bias.float()
    return lambda hidden: F.linear(hidden.float(), weight, bias)


def generation_prompt(loaded: LoadedModel, task: Task, prompt: str, max_length: int) -> list[int]:
    """The prompt's token ids as generation reads them: cut from the left to leave room for
    `max_new_tokens`; the passes that rescore a generated answer must read the same ones."""
    return encode(loaded.tokenizer, prompt, "", max_length=max_length - task.max_new_tokens,
                  add_eos=False).prompt


def encode_pairs(loaded: LoadedModel, task: Task, pairs: Sequence[tuple[str, str]],
                 max_length: int) -> list[Encoded]:
    """Token ids of (prompt, response) pairs; generative responses end with the EOS token."""
    return [encode(loaded.tokenizer, p, r, max_length=max_length, add_eos=task.generative)
            for p, r in pairs]


def choice_token_ids(loaded: LoadedModel, task: Task) -> list[list[int]]:
    return [loaded.tokenizer(c, add_special_tokens=False).input_ids for c in task.choices]


def split_label_words(tokenizer: Any, task: Task) -> list[str]:
    """The label words this tokenizer splits differently alone than after the pool's first
    prompt, one line each (none for byte-level BPE such as SmolLM2's or GPT-2's).

    Scoring and training tokenise prompt and answer apart. A SentencePiece tokenizer that adds
    a word-start marker to every text (LLaMA-2's, by default) reads " true" alone as two
    tokens, the marker and "▁true", where after the prompt it is one: the model is then scored
    and trained on a split it rarely saw. Worth knowing before a study, so it is said."""
    if not task.choices or not len(task.train):
        return []
    prompt = task.train[0].prompt
    start = len(tokenizer(prompt).input_ids)
    lines = []
    for words in task.choices:
        alone = tokenizer(words, add_special_tokens=False).input_ids
        after = tokenizer(prompt + words).input_ids[start:]
        if alone != after:
            lines.append(f"{words!r}: {alone} alone, {after} after the prompt")
    return lines


@dataclass
class ChoiceOutputs:
    label_logprob: np.ndarray
    """[passes, examples, labels]: log p(label's tokens | prompt)."""
    entropy: np.ndarray
    """[passes, examples, labels]: entropy summed over the positions of each label's tokens."""
    hidden: np.ndarray | None = None
    """[examples, hidden size]: the hidden state at the answer position (with `features`)."""


def choice_outputs(loaded: LoadedModel, task: Task, examples: Sequence[Example], *,
                   passes: int = 1, masks: torch.Generator | None = None, batch_size: int = 32,
                   max_length: int = 512, features: bool = False,
                   desc: str = "scoring") -> ChoiceOutputs:
    """Label log-probabilities and entropies. One-token labels share one pass over the prompt."""
    label_ids = choice_token_ids(loaded, task)
    n_labels = len(label_ids)
    common = {"passes": passes, "masks": masks, "batch_size": batch_size, "features": features,
              "desc": desc}
    if all(len(ids) == 1 for ids in label_ids):
        firsts = [ids[0] for ids in label_ids]
        gold_first = [firsts[task.labels.index(e.gold)] if e.gold in task.labels else firsts[0]
                      for e in examples]
        encoded = [Encoded(encode(loaded.tokenizer, e.prompt, "", max_length=max_length,
                                  add_eos=False).prompt, [g])
                   for e, g in zip(examples, gold_first, strict=True)]
        stats = response_stats(loaded, encoded, slot_labels=firsts, **common)
        entropy = np.repeat(stats.entropy[:, :, None], n_labels, axis=2)
        return ChoiceOutputs(stats.slot_logprob, entropy, stats.hidden)
    encoded = encode_pairs(loaded, task, [(e.prompt, c) for e in examples for c in task.choices],
                           max_length)
    stats = response_stats(loaded, encoded, **common)
    shape = (stats.entropy.shape[0], len(examples), n_labels)
    hidden = None  # every label's sequence shares the prompt: its first copy's state
    if stats.hidden is not None:
        hidden = stats.hidden.reshape(len(examples), n_labels, -1)[:, 0]
    return ChoiceOutputs(stats.logprob.reshape(shape), stats.entropy.reshape(shape), hidden)


@dataclass
class Generation:
    tokens: list[list[int]]
    """Greedy response ids per example, up to and including the end token."""
    mean_logprob: np.ndarray
    entropy: np.ndarray
    """ME (Eq. 2) of each response, from the logits generation already computed."""
    hidden: np.ndarray | None = None
    """[examples, hidden size]: the prompt's last hidden state (with `features`)."""


@torch.no_grad()
def generate(loaded: LoadedModel, task: Task, examples: Sequence[Example], *, batch_size: int,
             max_length: int, features: bool = False, desc: str = "generating") -> Generation:
    """Batched greedy decoding with the KV cache, prompts sorted by length; each sequence stops
    at its end token and leaves the batch (see `_generate_batch`).

    `features` keeps the hidden state at the answer position from the prompt's own forward
    pass (a hook on the backbone's first call per batch; prompts are left-padded, so it is
    the last position): the batch rules' embedding without a second pass."""
    prompts = [generation_prompt(loaded, task, e.prompt, max_length) for e in examples]
    result = Generation([[] for _ in examples], np.zeros(len(examples)), np.zeros(len(examples)))
    loaded.model.eval()
    prefill: list[torch.Tensor] = []

    def keep_answer_state(_module: torch.nn.Module, _args: object, output: object) -> None:
        if not prefill:
            prefill.append(output.last_hidden_state[:, -1].float().cpu())

    backbone = backbone_and_head(loaded.model)[0]
    hook = backbone.register_forward_hook(keep_answer_state) if features else None
    try:
        for batch in progress(sorted_batches([len(p) for p in prompts], batch_size), desc,
                              unit="batch"):
            prefill.clear()
            _generate_batch(loaded, task, [prompts[i] for i in batch], into=(result, batch))
            if features:
                if result.hidden is None:
                    result.hidden = np.zeros((len(examples), prefill[0].shape[1]), np.float32)
                result.hidden[batch] = prefill[0].numpy()
    finally:
        if hook is not None:
            hook.remove()
    return result


def _generate_batch(loaded: LoadedModel, task: Task, prompts: list[list[int]], *,
                    into: tuple[Generation, list[int]]) -> None:
    """Greedy responses of one batch of prompts, written into the result at the batch's rows.

    One prefill over the left-padded prompts (positions counted from the attention mask, as
    transformers' `generate` does), then one token per step for the rows still generating: a
    row that ends (end token or `max_new_tokens`) leaves the batch, and its KV-cache rows with
    it, so one long answer does not make the finished rows pay for its remaining steps. Only
    the last position is projected onto the vocabulary, in fp32 and outside autocast like the
    teacher-forced scores; each token's entropy and log-probability come from those logits.
    """
    result, batch = into
    eos, device = loaded.tokenizer.eos_token_id, loaded.device
    backbone, head = backbone_and_head(loaded.model)
    project = fp32_head(head)
    ids, mask = (t.to(device) for t in pad_left(prompts, loaded.tokenizer.pad_token_id))
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    cache = DynamicCache(config=causal_lm(loaded.model).config)
    live = torch.arange(len(prompts), device=device)  # the batch rows still generating
    generated = torch.zeros(len(prompts), task.max_new_tokens, dtype=torch.long, device=device)
    lengths = torch.zeros(len(prompts), dtype=torch.long, device=device)
    entropy = torch.zeros(len(prompts), device=device)
    logprob = torch.zeros(len(prompts), device=device)
    for step in range(task.max_new_tokens):
        with loaded.autocast():
            hidden = backbone(input_ids=ids, attention_mask=mask, position_ids=positions,
                              cache=cache, use_cache=True).last_hidden_state[:, -1]
        logits = project(hidden)  # [live, vocab]
        token = logits.argmax(-1)
        generated[live, step] = token
        lengths[live] += 1
        entropy[live] += token_entropy(logits)
        logprob[live] += token_logprob(logits, token)
        going = token != eos
        if step + 1 == task.max_new_tokens or not going.any():
            break
        if not going.all():
            keep = going.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            live, token, mask, positions = live[keep], token[keep], mask[keep], positions[keep]
        ids = token[:, None]
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
        positions = positions[:, -1:] + 1
    for row, index in enumerate(batch):
        result.tokens[index] = generated[row, : lengths[row]].tolist()
    result.entropy[batch] = entropy.cpu().numpy()
    result.mean_logprob[batch] = (logprob / lengths).cpu().numpy()


@dataclass
class Prediction:
    id: str
    prediction: str
    gold: str | None
    correct: bool | None
    """None for an unlabeled example (no gold to compare with)."""
    confidence: float


def _verdict(task: Task, prediction: str, gold: str | None) -> bool | None:
    return None if gold is None else task.is_correct(prediction, gold)


def predict(loaded: LoadedModel, task: Task, examples: Sequence[Example], *, batch_size: int,
            max_length: int) -> list[Prediction]:
    """Answers in comparable form. Choice: argmax over labels, confidence renormalised over
    them. Generative: the greedy answer parsed, confidence the geometric-mean token probability.
    """
    if not task.generative:
        out = choice_outputs(loaded, task, examples, batch_size=batch_size, max_length=max_length,
                             desc="evaluating")
        probs = torch.softmax(torch.from_numpy(out.label_logprob[0]), dim=-1).numpy()
        best = probs.argmax(axis=1)
        return [Prediction(e.id, task.labels[b], e.gold, _verdict(task, task.labels[b], e.gold),
                           confidence=float(p[b]))
                for e, b, p in zip(examples, best, probs, strict=True)]
    return [Prediction(e.id, task.parse(text), e.gold, _verdict(task, task.parse(text), e.gold),
                       confidence=confidence)
            for e, (text, confidence) in zip(examples, drafts(
                loaded, task, examples, batch_size=batch_size, max_length=max_length), strict=True)]


def drafts(loaded: LoadedModel, task: Task, examples: Sequence[Example], *, batch_size: int,
           max_length: int) -> list[tuple[str, float]]:
    """The model's greedy responses as text, with their geometric-mean token probability: the
    drafts an annotator corrects (post-editing) and what `predict` parses."""
    generation = generate(loaded, task, examples, batch_size=batch_size, max_length=max_length,
                          desc="evaluating")
    return [(loaded.tokenizer.decode(tokens, skip_special_tokens=True).strip(), float(np.exp(lp)))
            for tokens, lp in zip(generation.tokens, generation.mean_logprob, strict=True)]
