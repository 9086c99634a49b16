"""LoRA fine-tuning through PEFT, with the hybrid regularisation's L2 decay on B only.

Each round trains on all labels so far; by default from the same initial adapter weights
(as the paper's code), or from the last round's adapter with `train.init: continue`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from star.config import TrainConfig
from star.data.batching import Encoded, encode, pad_right, response_positions, shuffled_length_groups
from star.data.tasks import Example, Task, class_weights
from star.model.loading import LoadedModel
from star.model.lora import backbone_and_head, causal_lm, dropout_generator
from star.processes import ALONE, Processes
from star.progress import log, progress
from star.seeding import derived_seed, numpy_rng, torch_generator


def optimizer_groups(model: nn.Module, weight_decay_b: float) -> list[dict]:
    """AdamW groups: decay β on every `lora_B` weight, none on `lora_A` or anything else."""
    decay, plain = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if "lora_B" in name else plain).append(param)
    return [{"params": decay, "weight_decay": weight_decay_b},
            {"params": plain, "weight_decay": 0.0}]


def balances(config: TrainConfig, task: Task) -> bool:
    """Whether the classes of the labels weigh alike (`train.balance: classes`); a generative
    task has no classes, only answers."""
    return config.balance == "classes" and not task.generative


def answer_loss(loaded: LoadedModel, items: Sequence[Encoded], *,
                tokens: int | None = None, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Cross-entropy over the response tokens of a batch (prompt and padding excluded), summed
    and divided by `tokens`: by default this batch's response tokens (the mean); under DDP the
    whole batch's, of which this process holds a share. `weights` scale each item's tokens."""
    backbone, head = backbone_and_head(loaded.model)
    ids, mask = pad_right([e.inputs for e in items], loaded.tokenizer.pad_token_id)
    rows, cols, targets = response_positions(items, device=loaded.device)
    with loaded.autocast():
        hidden = backbone(input_ids=ids.to(loaded.device), attention_mask=mask.to(loaded.device),
                          use_cache=False).last_hidden_state
    # The head runs in fp32 on answer tokens only: cheap there, and no cast of its weights.
    logits = head(hidden[rows, cols].float())  # [answer tokens, vocab]
    losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    if weights is not None:
        losses = losses * torch.tensor(weights, device=losses.device)[rows]
    return losses.sum() / (len(targets) if tokens is None else tokens)


class ShareLoss(nn.Module):
    """One process's share of a batch's loss, as a module so that DDP can wrap it.

    DDP averages gradients over the processes, so each share is its summed token loss divided
    by the whole batch's response tokens and multiplied by the number of processes: the
    averaged gradient is then the gradient of the whole batch's mean loss, as one process
    computes it (up to the order of float sums). A process whose share is empty still runs a
    forward pass (a zero loss on every trainable weight), or the others would wait for it.
    """

    def __init__(self, loaded: LoadedModel, world: int) -> None:
        super().__init__()
        self.model = loaded.model
        self.loaded = loaded
        self.world = world

    def forward(self, items: list[Encoded], tokens: int,
                weights: list[float] | None = None) -> torch.Tensor:
        if not items:
            return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
        return answer_loss(self.loaded, items, tokens=tokens, weights=weights) * self.world


EAGER_ATTENTION_BYTES = 2 * 2**30
"""Most memory the eager attention probabilities kept for the backward pass may take."""


def eager_attention_bytes(model_config, batch_size: int, length: int) -> int:
    """What eager attention keeps for the backward pass of one batch: every layer's attention
    probabilities, in fp32 (softmax) and in the compute dtype (matmul), 6 bytes a score."""
    scores = batch_size * model_config.num_attention_heads * length**2
    return model_config.num_hidden_layers * scores * 6


@contextmanager
def training_attention(loaded: LoadedModel, batch_size: int, longest: int) -> Iterator[None]:
    """Transformers' eager attention while training on CPU, where it fits in memory.

    Torch's CPU flash-attention backward was a tenth of a training step (profiled); with eager
    attention, whose backward is plain matmuls, LoRA training ran 13-17 % faster on SST-2,
    BoolQ and GSM8K prompts (25-370 tokens, measured side by side). Eager keeps each layer's
    attention probabilities, which grow with the square of the length, so long batches keep
    the fused kernel; scoring keeps it too (no backward there, and no gain measured).
    """
    causal = causal_lm(loaded.model)
    before = getattr(causal.config, "_attn_implementation", None)
    fits = eager_attention_bytes(causal.config, batch_size, longest) <= EAGER_ATTENTION_BYTES
    if loaded.device.type != "cpu" or before != "sdpa" or not fits:
        yield
        return
    causal.set_attn_implementation("eager")
    try:
        yield
    finally:
        causal.set_attn_implementation(before)


@dataclass
class TrainStats:
    seconds: float
    tokens: int
    padded_tokens: int
    final_loss: float

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.tokens / self.padded_tokens if self.padded_tokens else 0.0


def train_adapter(loaded: LoadedModel, task: Task, examples: Sequence[Example], *,
                  config: TrainConfig, weight_decay_b: float, seed: int, round_index: int,
                  max_length: int, processes: Processes = ALONE) -> TrainStats:
    """Fine-tune the attached adapter on `examples` with loss on response tokens only.

    Data order and dropout masks come from generators derived from (seed, round), so a
    resumed run trains exactly as the uninterrupted one did. Several `processes` train one
    adapter with DDP: every batch (the same on all) is dealt out between them, gradients are
    averaged, and every process steps its optimizer the same way, so the adapters stay equal.
    Each process draws its dropout masks from a generator of its own (part = its rank).

    The LM head runs only at response positions: for a one-token answer that skips a
    full-vocabulary projection at every prompt position (a quarter of a small model's FLOPs).
    """
    model = loaded.model
    encoded = [encode(loaded.tokenizer, e.prompt, e.response, max_length=max_length,
                      add_eos=task.generative) for e in examples]
    weights = class_weights([e.gold for e in examples]) if balances(config, task) else None
    cut = sum(e.answer_cut for e in encoded)
    if cut and processes.main:
        log(f"warning: {cut} of {len(encoded)} answers are longer than model.max_length − 1 "
            f"({max_length - 1}) tokens; training sees only their beginning (raise model.max_length)")
    lengths = [len(e) for e in encoded]
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    # One fused kernel for all LoRA tensors (420 in the default model): 15 ms a step on CPU
    # instead of 52-68 ms for the per-tensor-list (foreach) kernels.
    optimizer = torch.optim.AdamW(optimizer_groups(model, weight_decay_b), lr=config.lr,
                                  fused=loaded.device.type in ("cpu", "cuda"))
    warmup = int(config.warmup_ratio * total_steps)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    rng = numpy_rng(seed, round_index, "train_order")
    masks = torch_generator(seed, round_index, "train_dropout", loaded.device,
                            part=processes.rank)
    tokens = padded = 0
    loss_value = float("nan")
    start = time.perf_counter()
    model.train()
    batches = [batch for _ in range(config.epochs)
               for batch in shuffled_length_groups(lengths, config.batch_size, rng)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    share_loss: nn.Module = ShareLoss(loaded, processes.world)
    if processes.several:
        share_loss = DistributedDataParallel(
            share_loss, find_unused_parameters=False, init_sync=False,
            device_ids=[loaded.device] if loaded.device.type == "cuda" else None)
    # LoRA's dropout draws from `masks`; any dropout of the base model (attention, residual:
    # 0 in SmolLM2 and LLaMA-2, not in every model) draws from torch's global generator, so it
    # runs in a forked global state seeded for this round, as every other draw is.
    devices = [loaded.device] if loaded.device.type == "cuda" else []
    with training_attention(loaded, config.batch_size, max(lengths)), \
            dropout_generator(model, masks), torch.random.fork_rng(devices=devices):
        torch.manual_seed(derived_seed(seed, round_index, "base_dropout", part=processes.rank))
        for batch in progress(batches, "training", unit="batch"):
            items = [encoded[i] for i in batch]
            share = items[processes.rank::processes.world]
            share_weights = None if weights is None else \
                [weights[i] for i in batch][processes.rank::processes.world]
            if share:
                tokens += sum(len(e.inputs) for e in share)
                padded += len(share) * max(len(e.inputs) for e in share)
            loss = share_loss(share, sum(len(e.response) for e in items), share_weights)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_value = float(summed(loss.detach(), processes)) / processes.world
    model.eval()
    counts = torch.tensor([tokens, padded], device=loaded.device)  # NCCL reduces CUDA tensors only
    tokens, padded = (int(v) for v in summed(counts, processes))
    return TrainStats(time.perf_counter() - start, tokens, padded, loss_value)


def summed(value: torch.Tensor, processes: Processes) -> torch.Tensor:
    """`value` summed over the processes (itself when alone)."""
    if processes.several:
        value = value.clone()
        torch.distributed.all_reduce(value)
    return value
