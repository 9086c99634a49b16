"""Random generators derived from (seed, round, phase): the one source of every random draw.

A run that is killed and resumed must draw exactly what the uninterrupted run drew. So no
draw reads global state (torch's or numpy's default generator), which a resumed process
would find in another state; each phase builds its own generator from its coordinates.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

PHASES = ("pool", "test", "stop", "warm_start", "lora_init", "train_order", "train_dropout",
          "mc_dropout", "mc_first_pass", "random_scores", "batch_rule", "forecast", "probe_train",
          "probe_demos", "base_dropout", "bootstrap", "noise_train", "guard_folds", "guard_train",
          "typiclust", "bandit", "train_retry")
"""Every phase that draws random numbers; a name outside this list is a bug."""


def derived_seed(seed: int, round_index: int, phase: str, part: int = 0) -> int:
    """A 63-bit seed from the coordinates of a draw (stable across Python versions). `part`
    numbers the independent pieces of one phase (the parts of a scoring pass); part 0 draws
    what the phase drew before it had parts."""
    if phase not in PHASES:
        raise ValueError(f"unknown random phase '{phase}'")
    coordinates = f"{seed}/{round_index}/{phase}" + (f"/{part}" if part else "")
    digest = hashlib.sha256(coordinates.encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def numpy_rng(seed: int, round_index: int, phase: str) -> np.random.Generator:
    return np.random.default_rng(derived_seed(seed, round_index, phase))


def torch_generator(seed: int, round_index: int, phase: str,
                    device: torch.device | str = "cpu", part: int = 0) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(derived_seed(seed, round_index, phase, part))
    return generator
