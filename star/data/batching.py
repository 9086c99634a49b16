"""Token ids of prompt + response, and length-sorted batches with little padding.

Prompt and response are tokenised apart and concatenated, so the boundary is where the
task put it; a prompt too long for `max_length` loses tokens from its left, never the answer
nor a leading BOS token (Llama-2 was trained with one at the start of every text). Only an
answer that alone exceeds `max_length` − 1 tokens is cut (at its end), and says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Encoded:
    prompt: list[int]
    response: list[int]
    answer_cut: bool = False
    """The response alone was longer than `max_length` − 1 tokens and lost its end."""

    @property
    def ids(self) -> list[int]:
        return self.prompt + self.response

    @property
    def inputs(self) -> list[int]:
        """What the model must read to predict every response token: all but the last token."""
        return self.ids[:-1] if self.response else self.ids

    def __len__(self) -> int:
        return len(self.prompt) + len(self.response)


def encode(tokenizer, prompt: str, response: str, *, max_length: int, add_eos: bool) -> Encoded:
    prompt_ids = tokenizer(prompt).input_ids
    response_ids = tokenizer(response, add_special_tokens=False).input_ids if response else []
    if add_eos:
        response_ids = [*response_ids, tokenizer.eos_token_id]
    cut = len(response_ids) > max_length - 1
    response_ids = response_ids[: max_length - 1]
    keep = max(1, max_length - len(response_ids))
    if len(prompt_ids) > keep > 1 and prompt_ids[0] == tokenizer.bos_token_id:
        prompt_ids = [prompt_ids[0], *prompt_ids[-(keep - 1):]]
    return Encoded(prompt_ids[-keep:], response_ids, answer_cut=cut)


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (fails early on memory)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i: i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def shuffled_length_groups(lengths: Sequence[int], batch_size: int,
                           rng: np.random.Generator, group_batches: int = 16) -> Iterator[list[int]]:
    """Training batches: shuffle, sort inside windows of `group_batches` batches, shuffle batches.

    Keeps most of the randomness of plain shuffling while cutting padding.
    """
    order = rng.permutation(len(lengths))
    window = batch_size * group_batches
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start: start + window]
        chunk = chunk[np.argsort([-lengths[i] for i in chunk], kind="stable")]
        batches += [chunk[i: i + batch_size].tolist() for i in range(0, len(chunk), batch_size)]
    for index in rng.permutation(len(batches)):
        yield batches[index]


def pad_right(sequences: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [batch, time] and attention mask [batch, time], padded on the right."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    return ids, mask


def pad_left(sequences: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids and mask padded on the left, as generation needs."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, width - len(sequence):] = torch.tensor(sequence)
        mask[row, width - len(sequence):] = 1
    return ids, mask


def response_positions(items: Sequence[Encoded], copies: int = 1,
                       device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """(rows, cols, targets) of every response token in a right-padded batch of `items`.

    Response token j of a sequence is predicted at position len(prompt) - 1 + j. With `copies`
    the batch holds the items `copies` times over (MC passes), row r being item r % len(items).
    """
    rows, cols, targets = [], [], []
    for row in range(copies * len(items)):
        item = items[row % len(items)]
        start = len(item.prompt) - 1
        rows += [row] * len(item.response)
        cols += range(start, start + len(item.response))
        targets += item.response
    return tuple(torch.tensor(v, dtype=torch.long, device=device) for v in (rows, cols, targets))
