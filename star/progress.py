"""Progress bars on a terminal; plain log lines when not on one or when CI is set."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Wrap a long loop: a tqdm bar with its rate, or nothing but a closing log line."""
    if interactive():
        yield from tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
        return
    yield from items


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
