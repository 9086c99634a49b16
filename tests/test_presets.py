"""Every preset loads, names the command that runs it, and keeps the paper's numbers."""

import re
from pathlib import Path

import pytest

from star.config import load_config

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_loads_and_shows_its_command(path):
    config = load_config(path)
    assert path.read_text().startswith("# ")
    assert "star compare configs/" + path.name in path.read_text()
    assert config.loop.warm_start <= config.loop.budget


def test_paper_presets_match_the_paper():
    gsm8k = load_config(Path(PRESETS[0]).parent / "paper-gsm8k.yaml")
    assert (gsm8k.loop.warm_start, gsm8k.loop.step, gsm8k.loop.budget) == (500, 500, 5000)
    assert (gsm8k.train.batch_size, gsm8k.train.lr, gsm8k.train.epochs) == (8, 1.5e-4, 3)
    obqa = load_config(Path(PRESETS[0]).parent / "paper-obqa.yaml")
    assert (obqa.loop.warm_start, obqa.loop.step, obqa.loop.budget) == (200, 200, 2000)
    assert (obqa.train.batch_size, obqa.train.lr, obqa.train.epochs) == (32, 3e-5, 15)


@pytest.mark.parametrize("name", ["paper-gsm8k", "paper-boolq", "paper-obqa"])
def test_paper_presets_load_onto_a_gpu_in_bf16_with_fused_attention(name, monkeypatch):
    """No GPU here: CUDA is faked and transformers' loaders record what they are asked for.
    On CUDA `auto` means bf16 compute; the weights go straight to the GPU with SDPA attention
    (or FlashAttention-2 when set), and each process of a launch takes its own GPU."""
    from unittest import mock

    import torch
    import transformers

    from star.model import loading
    from star.processes import Processes, shared_device

    config = load_config(Path(PRESETS[0]).parent / f"{name}.yaml",
                         ["model.attention=flash_attention_2"] if name == "paper-obqa" else [])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    asked = {}

    def record(_path, **kwargs):
        asked.update(kwargs)
        return mock.MagicMock(pad_token_id=0)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", record)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", record)
    loaded = loading.load_model(config.model)
    assert loaded.device == torch.device("cuda") and loaded.compute_dtype == torch.bfloat16
    assert asked["device_map"] == {"": torch.device("cuda")} and asked["dtype"] == torch.float32
    assert asked["attn_implementation"] == ("flash_attention_2" if name == "paper-obqa" else "sdpa")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    second = shared_device(Processes(rank=9, world=16, local_rank=1), torch.device("cuda"))
    assert second == torch.device("cuda", 1)
    # more processes than GPUs on a machine: they share them, as accelerate assigns them
    assert shared_device(Processes(rank=4, world=6, local_rank=4), torch.device("cuda")) == \
        torch.device("cuda", 0)
    assert shared_device(Processes(rank=1, world=2, local_rank=1), torch.device("cpu")).type == "cpu"


def test_a_gpu_that_only_emulates_bf16_computes_in_fp32_and_refuses_flash_attention(monkeypatch):
    """V100s and T4s "support" bf16 by emulation: `auto` takes fp32 there, which FlashAttention-2
    cannot run, so that pairing stops at load with one line instead of inside the first pass."""
    import torch

    from star.errors import StarError
    from star.model import loading

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation)
    assert loading.pick_compute_dtype("auto", torch.device("cuda")) == torch.float32
    config = load_config(Path(PRESETS[0]).parent / "paper-obqa.yaml",
                         ["model.attention=flash_attention_2"])
    with pytest.raises(StarError, match=re.escape("'flash_attention_2' needs bf16 compute, and "
                                                  "model.dtype 'auto' gives fp32 here")):
        loading.load_model(config.model)


def test_bf16_on_a_cpu_that_emulates_it_is_kept_but_warned_about(monkeypatch, capsys):
    """Without avx512_bf16 or AMX a CPU emulates bf16 matmuls (measured: 0.3 GFLOP/s against
    fp32's 150 on 2 AVX2 cores): `auto` takes fp32, an explicit bfloat16 is obeyed with a
    warning, and a CPU with native bf16 gets none."""
    import torch

    from star.model import loading

    monkeypatch.setattr(loading, "cpu_has_fast_bf16", lambda: False)
    assert loading.pick_compute_dtype("auto", torch.device("cpu")) == torch.float32
    assert capsys.readouterr().err == ""
    assert loading.pick_compute_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert "without native bf16" in capsys.readouterr().err
    monkeypatch.setattr(loading, "cpu_has_fast_bf16", lambda: True)
    assert loading.pick_compute_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert loading.pick_compute_dtype("auto", torch.device("cpu")) == torch.bfloat16
    assert capsys.readouterr().err == ""
