"""Fixtures: a tiny Llama and tokenizer built here (no download), and a small choice task."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
from pathlib import Path

import pytest
import torch

from star.config import load_config
from star.data.sources import load_task
from star.model.loading import load_model
from tests.labelstudio import label_studio  # noqa: F401 (a fixture: the session's Label Studio server)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# A shell starts a background job (`make test &`, `nohup ... &`) with SIGINT ignored, and every
# process it starts inherits that: the tests that stop `star label` and `star labelstudio` with
# Ctrl+C (SIGINT) would wait for them forever. Python's own handler here puts it back for the
# children (a handler, unlike an ignored signal, resets to the default across exec), as in a
# terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

WORDS = ["red", "blue", "green", "cat", "dog", "fish", "sun", "rain", "tree", "stone"]


def toy_records(n: int, seed: int) -> list[dict]:
    """Sentences whose label is whether 'cat' or 'dog' comes first: learnable, not trivial."""
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        words = rng.sample(WORDS, 5)
        label = "yes" if words.index("cat" if "cat" in words else words[0]) <= 2 else "no"
        records.append({"question": " ".join(words), "answer": label})
    return records


def MC_MASKS(seed: int = 0) -> torch.Generator:
    """A fresh generator for MC-dropout masks, as the loop derives one per round."""
    from star.seeding import torch_generator

    return torch_generator(seed, 1, "mc_dropout")


def refuse_writes_below(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make creating a folder or writing a file below `folder` fail as a read-only folder
    makes it fail (EACCES). The OS does this only for users other than root, and these tests
    run as root in CI, so the refusal is made here, the same for every user."""
    real_mkdir, real_open = Path.mkdir, Path.open

    def refused(path: Path) -> PermissionError:
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def mkdir(self: Path, *args, **kwargs):
        if folder in self.parents and not self.exists():
            raise refused(self)
        return real_mkdir(self, *args, **kwargs)

    def open_(self: Path, mode: str = "r", *args, **kwargs):
        if folder in self.parents and set(mode) & set("wax+"):
            raise refused(self)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(Path, "open", open_)


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer Llama with a byte-level BPE tokenizer, saved like a hub model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    corpus = [" ".join(WORDS), "Question: Answer: yes no true false A B C D E The correct answer is"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus * 50, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<pad>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def toy_data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("toy-data")
    write_jsonl(folder / "train.jsonl", toy_records(80, 0))
    write_jsonl(folder / "test.jsonl", toy_records(20, 1))
    return folder


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test its own cache, never the user's: a μ_b cached by another run (another batch,
    another CPU kernel) differs in the 7th digit and would change a replay's picks. A test
    undoes its own patches with `monkeypatch.context()`: `monkeypatch.undo()` undoes this too."""
    monkeypatch.setenv("STAR_CACHE_DIR", str(tmp_path / "cache"))


def tiny_settings(model_dir: Path, data_dir: Path) -> list[str]:
    """`--set` overrides for a seconds-long run on the tiny model and toy task."""
    return [
        f"model.name={model_dir}", "model.dtype=float32", "model.max_length=64",
        "task.name=custom", f"task.data_dir={data_dir}",
        "task.prompt='Question: {question}\\nAnswer:'", "task.labels=[yes, no]",
        "lora.r=4", "lora.alpha=8", "train.epochs=1", "train.batch_size=8", "train.lr=1e-3",
        "loop.warm_start=8", "loop.step=8", "loop.budget=24", "loop.pool_size=60",
        "loop.test_size=16", "uncertainty.batch_size=16",
        "guard.folds=0",  # the prompt guard retrains each round k times: tested on its own
        "train.retries=0",  # a round's retries on the tiny model: tested on their own
    ]


@pytest.fixture
def tiny_overrides(tiny_model_dir, toy_data_dir) -> list[str]:
    return tiny_settings(tiny_model_dir, toy_data_dir)


@pytest.fixture
def number_setup(tiny_overrides, tmp_path):
    """A number task (a + b) on the tiny model: its config, task and loaded model."""
    write_jsonl(tmp_path / "train.jsonl", [{"question": f"{a} cat {b}", "answer": str(a + b)}
                                           for a in range(4) for b in range(3)])
    write_jsonl(tmp_path / "test.jsonl", [{"question": "1 cat 2", "answer": "3"}])
    config = load_config(None, [*tiny_overrides, f"task.data_dir={tmp_path}",
                                "task.answer_type=number", "task.labels=null",
                                "task.max_new_tokens=6"])
    return config, load_task(config.task), load_model(config.model)


@pytest.fixture
def lora_setup(tiny_overrides):
    """The tiny model with a LoRA adapter attached at its initial weights (B = 0), its config
    and task."""
    from star.model.lora import attach_lora

    config = load_config(None, tiny_overrides)
    task = load_task(config.task)
    loaded = load_model(config.model)
    attach_lora(loaded, config.lora, seed=0)
    return config, task, loaded
