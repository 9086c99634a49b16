"""LoRA, in one place: attaching the adapter, its dropout, the MC switch, the base model's
view with the adapter off, and the adapter's weights in memory and on disk.

The adapter is PEFT's. Its dropout is replaced by `FastDropout`, which draws its masks from
a generator the caller hands over per phase (`dropout_generator`), never from torch's global
one, so an interrupted run replays its masks exactly.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn

from star.config import LoraConfig
from star.errors import DataError, StarError
from star.files import fsync_folder, fsync_tree, make_folder
from star.model.loading import LoadedModel, store_frozen_weights

ADAPTER_WEIGHTS = "adapter_model.safetensors"
"""PEFT's file name for the adapter's weights inside a `save_pretrained` folder."""


class FastDropout(nn.Dropout):
    """Inverted dropout that draws a quarter of the random numbers `nn.Dropout` draws.

    Torch's CPU Bernoulli and uniform kernels take one generator call per element, on one
    thread, and LoRA needs a mask for the input of every adapted projection in every MC pass:
    those draws were a quarter of MC-dropout scoring time (profiled). Here each 64-bit draw
    gives four 16-bit lanes, and a lane below p · 2^16 drops its element, so p is kept to
    1/65,536 (0.1 acts as 0.100006). Masks come from `self.generator`, set per phase.
    """

    def __init__(self, p: float) -> None:
        super().__init__(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.generator is None:
            raise RuntimeError("LoRA dropout is on but no generator was set (dropout_generator)")
        draws = torch.empty((x.numel() + 3) // 4, dtype=torch.int64, device=x.device)
        lanes = draws.random_(-(2**63), None, generator=self.generator)
        keep = lanes.view(torch.int16)[: x.numel()].view(x.shape) >= round(self.p * 2**16) - 2**15
        return (x * keep).mul_(1.0 / (1.0 - self.p))


def lora_dropouts(model: nn.Module) -> list[FastDropout]:
    return [module for module in model.modules() if isinstance(module, FastDropout)]


def _use_fast_dropout(model: nn.Module) -> None:
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, nn.ModuleDict):
            for name, dropout in dropouts.items():
                if isinstance(dropout, nn.Dropout):
                    dropouts[name] = FastDropout(dropout.p)


@contextmanager
def dropout_generator(model: nn.Module, generator: torch.Generator) -> Iterator[None]:
    """Every LoRA dropout mask drawn inside the block comes from `generator`."""
    dropouts = lora_dropouts(model)
    for module in dropouts:
        module.generator = generator
    try:
        yield
    finally:
        for module in dropouts:
            module.generator = None


def attach_lora(loaded: LoadedModel, config: LoraConfig, seed: int) -> None:
    """Wrap the base model with a LoRA adapter whose initial weights depend on `seed` alone.

    PEFT draws A from torch's global generator; the draw runs inside a forked global state
    (the CPU's and, on CUDA, the model's device's) seeded with `seed`, so neither the caller's
    state nor earlier draws can change it, and the caller's state is left as it was.
    """
    peft_config = PeftLoraConfig(r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                 target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    try:
        devices = [loaded.device] if loaded.device.type == "cuda" else []
        with warnings.catch_warnings(), torch.random.fork_rng(devices=devices):
            # PEFT reads transformers' deprecated `is_gradient_checkpointing`; the notice is theirs.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            torch.manual_seed(seed)
            loaded.model = get_peft_model(loaded.model, peft_config)
    except ValueError as exc:
        raise StarError(f"lora.target_modules {config.target_modules}: {exc}") from None
    _use_fast_dropout(loaded.model)
    store_frozen_weights(loaded)
    loaded.model.eval()


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


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the trainable (LoRA) weights, in host memory: a copy kept across rounds must
    not hold GPU memory (0.6 GB for a 7B model with r = 64 on every projection)."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()
            if p.requires_grad}


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def save_adapter(model: nn.Module, folder: Path) -> None:
    """PEFT's `save_pretrained` layout, ready for `PeftModel.from_pretrained`, written whole:
    into a sibling folder first, synced, which then takes the final name."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    make_folder(folder.parent)
    model.save_pretrained(partial)
    fsync_tree(partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    fsync_folder(folder.parent)


def load_adapter(model: nn.Module, folder: Path) -> None:
    """Load weights saved by `save_adapter` into the attached adapter."""
    weights = folder / ADAPTER_WEIGHTS
    if not weights.exists():
        raise DataError(f"adapter weights '{weights}' are missing")
    set_peft_model_state_dict(model, load_file(weights))
