"""Several processes on one or more machines: who computes which part of a pass, who writes.

Runs are launched the ecosystem's way (`torchrun --nproc_per_node N -m star run ...`); every
process runs the same loop on the same files (SPMD) and accelerate's `PartialState` joins them
into one process group (gloo on CPU, NCCL on CUDA) from torchrun's environment. A pass over
many examples is cut into parts of fixed size; each wave of parts is split between the
processes (`split_between_processes`), the results are gathered in part order, and the main
process saves them. Because a part is computed the same way whoever computes it, N processes
give the scores one process gives, and a killed pass resumes from its saved parts.

Alone (no WORLD_SIZE in the environment, the ordinary case) nothing is initialised and every
helper here reduces to the plain loop.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

Result = TypeVar("Result")
Item = TypeVar("Item")


@dataclass(frozen=True)
class Processes:
    """This process's place among the run's processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes files (the run folder, caches, the label journal)."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1


ALONE = Processes()
"""A run in one process."""
JOIN_TIMEOUT = timedelta(hours=2)
"""How long a process waits for the others at a collective before the group gives up."""


def launched_processes(device: torch.device | None = None) -> Processes:
    """This process's place, joining the process group when a launcher started several.

    The first call joins; `device`, the configured one, then chooses the backend: NCCL for
    CUDA, gloo for the CPU (without it: CUDA wherever there is one). A wave's idle processes
    wait for its slowest part (minutes of generation on a large model), so the group waits
    `JOIN_TIMEOUT` before it calls a process lost, not NCCL's default 10 minutes.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return ALONE
    import torch
    from accelerate import PartialState

    # torchrun's RANK, WORLD_SIZE, MASTER_ADDR, ...: NCCL and one GPU per process on CUDA,
    # else gloo on the CPU (which accelerate joins only when told `cpu`).
    cpu = not torch.cuda.is_available() if device is None else device.type != "cuda"
    state = PartialState(cpu=cpu, timeout=JOIN_TIMEOUT)
    return Processes(state.process_index, state.num_processes, state.local_process_index)


def wait_for_everyone(processes: Processes) -> None:
    """A barrier: files the main process wrote are there for the others to read afterwards."""
    if processes.several:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def leave_processes() -> None:
    """Leave the process group this process joined, if any, before the interpreter exits.

    A gloo group left standing keeps its threads until the C++ runtime tears them down, and
    that can abort a process whose work is done ("terminate called without an active
    exception"), so that torchrun fails a finished launch. No barrier: a process that leaves
    on an error must not wait for the others.
    """
    if "torch" not in sys.modules:  # a labeling command: no group was joined
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shared_device(processes: Processes, device: torch.device) -> torch.device:
    """Each process's own GPU when several share a machine, as accelerate sets it: local rank
    modulo the visible GPUs (more processes than GPUs share them); the CPU stays the CPU."""
    if device.type == "cuda" and processes.several:
        import torch

        return torch.device("cuda", processes.local_rank % torch.cuda.device_count())
    return device


def map_parts(count: int, compute: Callable[[int], Result], *, processes: Processes,
              saved: Callable[[int], Result | None] | None = None,
              save: Callable[[int, Result], None] | None = None) -> list[Result]:
    """The results of parts 0..count-1, in order, on every process.

    Parts `saved` returns are read back, not recomputed. The others are computed in waves of
    one part per process; after each wave every process holds every result of the wave, and
    the main process `save`s them, so a pass killed mid-way loses at most one wave.
    """
    results: list[Result | None] = [saved(part) if saved else None for part in range(count)]
    todo = [part for part, result in enumerate(results) if result is None]
    for start in range(0, len(todo), processes.world):
        wave = todo[start:start + processes.world]
        done = _share(wave, compute, processes)
        for part, result in done:
            results[part] = result
            if processes.main and save:
                save(part, result)
    return results  # type: ignore[return-value]  # every part was saved or computed


def map_spans(items: Sequence[Item], size: int, compute: Callable[[int, list[Item]], Result], *,
              processes: Processes, saved: Callable[[int], Result | None] | None = None,
              save: Callable[[int, Result], None] | None = None) -> list[Result]:
    """`map_parts` over `items` cut into spans of `size`: part p is computed from
    `items[p * size:(p + 1) * size]`, built only when that part is computed, so a pass over a
    large table holds one span at a time."""
    def computed(part: int) -> Result:
        return compute(part, list(items[part * size:(part + 1) * size]))

    return map_parts(-(-len(items) // size), computed, processes=processes, saved=saved,
                     save=save)


def _share(wave: list[int], compute: Callable[[int], Result],
           processes: Processes) -> list[tuple[int, Result]]:
    """(part, result) of one wave: this process's share computed, the others' gathered."""
    if not processes.several:
        return [(part, compute(part)) for part in wave]
    from accelerate import PartialState
    from accelerate.utils import gather_object

    with PartialState().split_between_processes(wave) as mine:
        computed = [(part, compute(part)) for part in mine]
    return gather_object(computed)
