"""Progress bars on a terminal; plain log lines when not on one or when CI is set."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI") and not _helper_process()


def _helper_process() -> bool:
    """A process other than the main one of a launch (torchrun sets RANK): it stays quiet, so
    the log reads as one run's."""
    return os.environ.get("RANK", "0") != "0"


def log(message: str) -> None:
    if not _helper_process():
        print(message, file=sys.stderr, flush=True)


def progress(items: Iterable[T], desc: str, total: int | None = None,
             unit: str = "it") -> Iterator[T]:
    """Wrap a long loop: a tqdm bar with its rate, or one closing log line with the rate."""
    if interactive():
        yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
        return
    start, count = time.perf_counter(), 0
    for item in items:
        yield item
        count += 1
    seconds = time.perf_counter() - start
    if seconds >= 1.0:
        log(f"  {desc}: {count} {unit} in {seconds:.1f}s ({count / seconds:.2f} {unit}/s)")
