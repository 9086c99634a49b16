"""The FLOPs model behind `star bench` (measured utilisation) and `star plan` (predicted cost).

Per token, a forward pass costs 2 × (non-embedding parameters, LoRA included); the LM head
costs 2 × vocab × hidden at every position where logits are taken (one per example for a
one-token answer, every response token for generation and training). LoRA training counts the
forward, the input-gradient pass through the frozen base (2 × base, no weight gradients) and
LoRA's weight gradients (2 × lora more). Attention-score FLOPs are left out (small next to the
weights at the lengths here), so predicted times are slight underestimates for long sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ParameterCounts:
    base: int
    """Non-embedding parameters of the base model."""
    lora: int
    head: int
    """vocab × hidden: the LM head's multiply-adds per position."""

    def forward(self, tokens: float, head_positions: float) -> float:
        return 2 * (self.base + self.lora) * tokens + 2 * self.head * head_positions

    def training(self, tokens: float, answer_tokens: float) -> float:
        """One optimisation pass over `tokens` whose `answer_tokens` carry the loss."""
        return tokens * (4 * self.base + 6 * self.lora) + answer_tokens * 4 * self.head


def counts_of_model(model: torch.nn.Module) -> ParameterCounts:
    """Counts of a loaded model with its adapter (embeddings and LM head apart)."""
    base = lora = 0
    for name, param in model.named_parameters():
        if "lora_" in name:
            lora += param.numel()
        elif "embed_tokens" not in name and "lm_head" not in name:
            base += param.numel()
    head = model.get_output_embeddings().weight
    return ParameterCounts(base, lora, head.shape[0] * head.shape[1])


def counts_of_architecture(arch: dict[str, Any], *, rank: int,
                           targets: list[str]) -> ParameterCounts:
    """Counts of a Llama-style decoder from its config.json fields, with LoRA of `rank` on
    `targets`: per layer, attention q, o (hidden²) and k, v (hidden × kv width), the gated MLP
    (3 × hidden × intermediate) and two norms; a LoRA pair adds rank × (in + out)."""
    hidden, inner = arch["hidden_size"], arch["intermediate_size"]
    heads = arch["num_attention_heads"]
    kv = hidden * arch.get("num_key_value_heads", heads) // heads
    shapes = {"q_proj": (hidden, hidden), "k_proj": (hidden, kv), "v_proj": (hidden, kv),
              "o_proj": (hidden, hidden), "gate_proj": (hidden, inner),
              "up_proj": (hidden, inner), "down_proj": (inner, hidden)}
    per_layer = sum(a * b for a, b in shapes.values()) + 2 * hidden
    lora = sum(rank * sum(shapes[t]) for t in targets if t in shapes)
    layers = arch["num_hidden_layers"]
    return ParameterCounts(layers * per_layer + hidden, layers * lora,
                           arch["vocab_size"] * hidden)
